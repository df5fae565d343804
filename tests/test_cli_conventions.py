"""CLI conventions: --version, --setup-dir before or after the command or from the environment,
and ``ensemble stop``; errors name CLI flags."""
from __future__ import annotations

import subprocess
import sys

import pytest
from engine_helpers import create, events, run, sh, start_detached, statuses, wait_file, wait_for, wait_manager_exit

from ensemble import __version__
from ensemble.cli import main
from ensemble.status import RunStatus


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"ensemble {__version__}\n"


def test_setup_dir_before_after_or_from_the_environment(edir, capsys, monkeypatch):
    ens = create([run(1, sh("true"))])
    for argv in (["--setup-dir", str(ens.setup_dir), "status", "--json"],
                 ["status", "--json", "--setup-dir", str(ens.setup_dir)]):
        assert main(argv) == 0
        assert '"queued": 1' in capsys.readouterr().out
    monkeypatch.setenv("ENSEMBLE_SETUP_DIR", str(ens.setup_dir))
    monkeypatch.chdir(edir.parent)
    assert main(["status", "--json"]) == 0 and '"queued": 1' in capsys.readouterr().out


def test_stop_lets_running_runs_finish_and_starts_nothing_more(edir, capsys):
    gate = edir / "gate"
    ens = create([run(i, sh(wait_file(gate))) for i in range(1, 5)])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: len([a for a in ens.attempts() if a["end"] is None]) == 2, "two runs running")
    assert main(["stop", "--setup-dir", str(ens.setup_dir)]) == 0
    assert "stop posted" in capsys.readouterr().out
    wait_for(lambda: events(ens, "stopping"), "the manager to stop launching")
    gate.touch()
    wait_manager_exit(ens, pid)
    status = statuses(ens)
    assert sorted(status.values()) == [RunStatus.QUEUED] * 2 + [RunStatus.SUCCESS] * 2
    assert main(["stop", "--setup-dir", str(ens.setup_dir)]) == 0
    assert "no manager is executing this ensemble" in capsys.readouterr().out


def test_execute_block_says_what_it_uses_and_warns_about_more_cores_than_here(edir, capsys):
    ens = create([run(1, sh("true"))])
    assert main(["execute", "--block", "--launcher", "local", "--cores", "4096", "--setup-dir", str(ens.setup_dir)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ensemble: warning: --cores 4096 is more than the ") and "runs will share them" in err[0]
    assert err[1].startswith("ensemble: executing with launcher local on 4096 cores")
    assert err[1].endswith(f"manager log: {ens.setup_dir / 'logs' / 'manager.log'}")


def test_status_shows_running_on_its_own_line(edir, capsys):
    gate = edir / "gate"
    ens = create([run(i, sh(wait_file(gate))) for i in range(1, 4)])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: len([a for a in ens.attempts() if a["end"] is None]) == 2, "two runs running")
    capsys.readouterr()
    assert main(["status", "--setup-dir", str(ens.setup_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [" waiting: 1", " running: 2"] and lines[-1] == "   total: 3"
    gate.touch()
    wait_manager_exit(ens, pid)


def test_every_option_and_argument_has_help():
    from ensemble.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]  # noqa: SLF001 - argparse keeps them here
    missing = [f"{name} {a.option_strings or a.dest}" for name, command in [("ensemble", parser), *sub.choices.items()]
               for a in command._actions if a.help in (None, "") and a.dest not in ("help", "command")]  # noqa: SLF001
    assert missing == []


def _commands(parser):
    (sub,) = [a for a in parser._actions if a.dest == "command"]  # noqa: SLF001 - argparse keeps them here
    return {name: [(a.dest, a.option_strings, a.default, a.nargs, a.help) for a in command._actions]  # noqa: SLF001
            for name, command in sub.choices.items()}


def test_a_command_named_in_the_arguments_gets_the_same_parser_as_in_the_full_one():
    from ensemble.cli import COMMANDS, build_parser

    full = _commands(build_parser())
    assert list(full) == list(COMMANDS)
    for name in COMMANDS:
        for argv in ([name, "--json"], ["--setup-dir", "s", name], ["--setup-dir=s", name, "1"]):
            built = _commands(build_parser(argv))
            assert name in built and built[name] == full[name], argv
            assert len(built) < len(full)
    for argv in ([], ["--help"], ["--version"], ["bogus"], ["--setup-dir", "create"], ["-h", "create"]):
        assert list(_commands(build_parser(argv))) == list(COMMANDS), argv


@pytest.mark.parametrize("argv, message", [
    (["execute", "--max-concurrency", "0"], "ensemble: error: --max-concurrency: must be > 0, got 0"),
    (["execute", "--kill-grace", "-1"], "ensemble: error: --kill-grace: expected seconds >= 0, got -1.0"),
    (["submit", "--nodes", "0", "--dry-run"], "ensemble: error: --nodes: must be >= 1, got 0"),
])
def test_errors_name_the_cli_flag_not_the_api_argument(tmp_path, argv, message):
    setup = tmp_path / "s"
    (tmp_path / "samples.csv").write_text("x\n1\n")
    assert main(["--setup-dir", str(setup), "create", str(tmp_path / "samples.csv"), "--application", "/bin/true",
                 "--no-batch-script"]) == 0
    done = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", str(setup), *argv], capture_output=True,
                          text=True)
    assert (done.returncode, done.stderr.strip()) == (2, message)
