"""Ensemble.create* / exists / clear / open, atomicity, and the status and run-changing API."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import SETUP, db_path, snapshot, sql, write_script

from ensemble import (
    CompositeRun,
    Ensemble,
    EnsembleError,
    EnsembleExists,
    HookError,
    Run,
    RunStatus,
    SpecError,
    SpecTypeError,
    Step,
    TemplateError,
)
from ensemble.store import NETWORK_FS, Store, filesystem_type

TRUE = shutil.which("true")


@pytest.fixture
def project(workdir: Path) -> Path:
    """A working directory with an application, input files and interface modules."""
    write_script(workdir / "app.sh", "#!/bin/sh\necho x=%%x%%\n")
    (workdir / "deck.txt").write_text("x = %%x%%\n")
    (workdir / "adir").mkdir()
    write_script(workdir / "a" / "data.txt", "a\n", 0o644)
    write_script(workdir / "b" / "data.txt", "b\n", 0o644)
    (workdir / "broken.py").write_text("import os\n\ndef helper():\n    return 1 / 0\n\nhelper()\n")
    (workdir / "notcallable.py").write_text("post_run = 5\n")
    return workdir


def runs(n: int = 2) -> list[Run]:
    return [Run({"x": i}) for i in range(n)]


def create(**kwargs) -> Ensemble:
    kwargs.setdefault("application", "app.sh")
    kwargs.setdefault("runs", runs())
    return Ensemble.create(**kwargs)


def leftovers(parent: Path) -> list[str]:
    """Setup or temporary directories of a create left in ``parent``."""
    return sorted(p.name for p in parent.iterdir() if "ensemble_setup" in p.name or ".creating" in p.name)


# -- bad input: error names field and value, nothing on disk changes ---------------------------------------------------
BAD_INPUT = [
    ({"application": 5}, SpecTypeError, ["application", "5"]),
    ({"application": None}, SpecError, ["application", "None"]),
    ({"application": "missing.sh"}, SpecError, ["'missing.sh'", "not found"]),
    ({"runs": 5}, SpecTypeError, ["runs", "5"]),
    ({"runs": "abc"}, SpecTypeError, ["runs", "'abc'"]),
    ({"runs": [Run({"x": 1}), 7]}, SpecTypeError, ["runs[1]", "7"]),
    ({"runs": [Step("app.sh")]}, SpecTypeError, ["runs[0]", "Step"]),
    ({"runs": [Run({"x": 1, "run_id": 3})]}, SpecError, ["run_id", "reserved"]),
    ({"runs": [Run({"y": 1})]}, TemplateError, ["app.sh", "line 2", "%%x%%"]),
    ({"run_parse": 5}, SpecTypeError, ["run_parse", "5"]),
    ({"run_parse": [None]}, SpecTypeError, ["run_parse", "None"]),
    ({"run_parse": "nomatch*.txt"}, SpecError, ["run_parse", "'nomatch*.txt'", "matches no file"]),
    ({"run_parse": "adir"}, SpecError, ["run_parse", "adir", "not a regular file"]),
    ({"run_parse": ""}, SpecError, ["run_parse", "''"]),
    ({"run_copy": "missing.dat"}, SpecError, ["run_copy", "'missing.dat'"]),
    ({"run_copy": 3.5}, SpecTypeError, ["run_copy", "3.5"]),
    ({"run_copy": ""}, SpecError, ["run_copy", "''"]),
    ({"run_symlink": "missing"}, SpecError, ["run_symlink", "'missing'"]),
    ({"run_symlink": [1]}, SpecTypeError, ["run_symlink", "1"]),
    ({"run_copy": "a/data.txt", "run_symlink": "b/data.txt"}, SpecError, ["run_symlink", "data.txt", "run_copy"]),
    ({"run_dir_names": 5}, SpecTypeError, ["run_dir_names", "5"]),
    ({"run_dir_names": ""}, SpecError, ["run_dir_names", "''"]),
    ({"run_dir_names": "runs/{missing}"}, SpecError, ["run_dir_names", "'runs/{missing}'", "missing"]),
    ({"run_dir_names": "runs/{"}, SpecError, ["run_dir_names", "'runs/{'"]),
    ({"run_dir_names": "runs/{x[0]}"}, SpecError, ["run_dir_names", "'runs/{x[0]}'"]),
    ({"run_dir_names": "same"}, SpecError, ["run_dir_names", "'same'", "another run"]),
    ({"app_interface": 5}, SpecTypeError, ["app_interface", "5"]),
    ({"app_interface": "missing.py"}, SpecError, ["app_interface", "'missing.py'"]),
    ({"app_interface": "broken.py"}, HookError, ["app_interface", "broken.py", "Traceback", "ZeroDivisionError",
                                                 "helper()"]),
    ({"app_interface": "notcallable.py"}, HookError, ["app_interface", "post_run", "not callable"]),
    ({"max_restarts": -1}, SpecError, ["max_restarts", "-1"]),
    ({"max_restarts": "2"}, SpecTypeError, ["max_restarts", "'2'"]),
    ({"max_restarts": 1.0}, SpecTypeError, ["max_restarts", "1.0"]),
    ({"max_restarts": True}, SpecTypeError, ["max_restarts", "True"]),
    ({"max_failed_runs": -2}, SpecError, ["max_failed_runs", "-2"]),
    ({"max_failed_runs": "x"}, SpecTypeError, ["max_failed_runs", "'x'"]),
    ({"app_is_batch_script": "yes"}, SpecTypeError, ["app_is_batch_script", "'yes'"]),
    ({"app_is_batch_script": None}, SpecTypeError, ["app_is_batch_script", "None"]),
    ({"use_flux": 1}, SpecTypeError, ["use_flux", "1"]),
    ({"use_flux": None}, SpecTypeError, ["use_flux", "None"]),
    ({"abort_on": 0}, SpecError, ["abort_on", "0"]),
    ({"abort_on": [1, 256]}, SpecError, ["abort_on", "256"]),
    ({"abort_on": ["1"]}, SpecTypeError, ["abort_on", "'1'"]),
    ({"abort_on": "3"}, SpecTypeError, ["abort_on", "'3'"]),
    ({"abort_on": [1.5]}, SpecTypeError, ["abort_on", "1.5"]),
    ({"abort_on": [True]}, SpecTypeError, ["abort_on", "True"]),
    ({"template_engine": "mako"}, SpecError, ["template_engine", "'mako'"]),
    ({"template_engine": 5}, SpecTypeError, ["template_engine", "5"]),
    ({"strict_templates": "no"}, SpecTypeError, ["strict_templates", "'no'"]),
    ({"setup_dir": 5}, SpecTypeError, ["setup_dir", "5"]),
    ({"setup_dir": ""}, SpecTypeError, ["setup_dir", "''"]),
    ({"application": "app.sh\0"}, SpecError, ["application", "NUL", "'app.sh\\x00'"]),
    ({"run_parse": ["deck.txt", "deck\0.txt"]}, SpecError, ["run_parse", "NUL", "'deck\\x00.txt'"]),
    ({"run_copy": "a/data.txt\0"}, SpecError, ["run_copy", "NUL", "'a/data.txt\\x00'"]),
    ({"run_symlink": "b\0"}, SpecError, ["run_symlink", "NUL", "'b\\x00'"]),
    ({"run_dir_names": "runs/\0{run_id}"}, SpecError, ["run_dir_names", "NUL", "'runs/\\x00{run_id}'"]),
    ({"app_interface": "hooks\0.py"}, SpecError, ["app_interface", "NUL", "'hooks\\x00.py'"]),
    ({"use_flux": "/bin/flux\0"}, SpecError, ["use_flux", "NUL", "'/bin/flux\\x00'"]),
    ({"setup_dir": "setup\0"}, SpecError, ["setup_dir", "NUL", "'setup\\x00'"]),
]
BAD_IDS = [",".join(f"{k}={v!r}" for k, v in case[0].items())[:60] for case in BAD_INPUT]


def check_error(info: pytest.ExceptionInfo, fragments: list[str]) -> None:
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize(("kwargs", "kind", "fragments"), BAD_INPUT, ids=BAD_IDS)
def test_create_rejects_bad_input_and_creates_nothing(project, kwargs, kind, fragments):
    before = snapshot(project)
    with pytest.raises(kind) as info:
        create(**kwargs)
    check_error(info, fragments)
    assert snapshot(project) == before
    assert not Ensemble.exists()


@pytest.mark.parametrize(("kwargs", "kind", "fragments"), BAD_INPUT, ids=BAD_IDS)
def test_create_overwrite_with_bad_input_leaves_old_ensemble_untouched(project, kwargs, kind, fragments):
    create(runs=runs(3)).close()
    before = snapshot(project)
    assert before[f"{SETUP}/ensemble.db"]
    with pytest.raises(kind) as info:
        Ensemble.create_overwrite(**{"application": "app.sh", "runs": runs(2), **kwargs})
    check_error(info, fragments)
    assert snapshot(project) == before
    with Ensemble() as ens:
        assert ens.count_by_status() == 3


def test_create_into_existing_ensemble_is_refused(project):
    create().close()
    before = snapshot(project)
    with pytest.raises(EnsembleError, match="already exists"):
        create(runs=runs(5))
    assert snapshot(project) == before


def test_create_into_existing_ensemble_raises_value_error(project):
    """The reference API documents a ValueError; EnsembleExists is one (and an EnsembleError)."""
    create().close()
    before = snapshot(project)
    with pytest.raises(ValueError, match="already exists") as info:
        create(runs=runs(5))
    assert isinstance(info.value, EnsembleExists) and isinstance(info.value, EnsembleError)
    assert snapshot(project) == before


@pytest.mark.parametrize("kind", ["file", "nonempty"])
def test_create_refuses_setup_dir_that_is_not_an_ensemble(project, kind):
    target = project / "occupied"
    if kind == "file":
        target.write_text("precious")
    else:
        target.mkdir()
        (target / "precious.txt").write_text("precious")
    before = snapshot(project)
    with pytest.raises(EnsembleError, match="occupied"):
        create(setup_dir="occupied")
    assert snapshot(project) == before


def test_create_uses_empty_existing_directory(project):
    (project / SETUP).mkdir()
    with create() as ens:
        assert ens.count_by_status() == 2
    assert leftovers(project) == [SETUP]


# -- atomicity ---------------------------------------------------------------------------------------------------------
def test_bad_run_900_of_1000_leaves_nothing(project):
    bad = [Run({"x": i}) for i in range(1000)]
    bad[899] = "not a run"
    before = snapshot(project)
    with pytest.raises(SpecTypeError, match=r"runs\[899\]"):
        create(runs=bad)
    assert snapshot(project) == before


def test_duplicate_run_dir_at_900_of_1000_rejected_up_front(project):
    samples = [Run({"x": i}) for i in range(1000)]
    samples[899] = Run({"x": 5})
    before = snapshot(project)
    with pytest.raises(SpecError, match="run 900") as info:
        create(runs=samples, run_dir_names="runs/x{x}")
    assert "runs/x5" in str(info.value)
    assert snapshot(project) == before


class Interrupting:
    """A numpy-like value whose serialisation is interrupted (Ctrl-C)."""

    def tolist(self):
        raise KeyboardInterrupt


def test_keyboard_interrupt_in_sample_serialisation_leaves_nothing(project):
    def generate():
        for i in range(1000):
            yield Run({"x": Interrupting() if i == 899 else i})

    before = snapshot(project)
    with pytest.raises(KeyboardInterrupt):
        create(runs=generate())
    assert snapshot(project) == before


def test_keyboard_interrupt_while_writing_runs_leaves_nothing(project, monkeypatch):
    def interrupted(self, first_id, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "insert_runs", interrupted)
    before = snapshot(project)
    with pytest.raises(KeyboardInterrupt):
        create(runs=runs(1000))
    assert snapshot(project) == before
    assert leftovers(project) == []


def test_keyboard_interrupt_during_overwrite_keeps_old_ensemble(project, monkeypatch):
    create(runs=runs(3)).close()
    before = snapshot(project)

    def interrupted(self, first_id, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "insert_runs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Ensemble.create_overwrite(application="app.sh", runs=runs(1000))
    assert snapshot(project) == before


def test_interrupt_between_clear_and_rename_keeps_old_ensemble(project, monkeypatch):
    create(runs=runs(3)).close()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Ensemble.create_overwrite(application="app.sh", runs=runs(1))
    monkeypatch.undo()
    assert leftovers(project) == [SETUP]
    with Ensemble(project / SETUP) as ens:
        assert ens.count_by_status() == 3


def test_interrupted_create_leaves_no_new_parent_directories(project, monkeypatch):
    def interrupted(self, first_id, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "insert_runs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        create(setup_dir="deep/er/setup")
    assert not (project / "deep").exists()


def test_bad_input_with_nested_setup_dir_creates_no_parents(project):
    with pytest.raises(SpecError):
        create(setup_dir="deep/er/setup", max_restarts=-1)
    assert not (project / "deep").exists()


# -- create, create_overwrite, create_resume, exists, clear, open -----------------------------------------------------
def test_create_defaults(project):
    assert not Ensemble.exists()
    with Ensemble.create(application="app.sh", runs=runs(3)) as ens:
        assert ens.setup_dir == project / SETUP
        cfg = ens.config
    assert Ensemble.exists() and Ensemble.exists(SETUP) and Ensemble.exists(project / SETUP)
    assert (project / SETUP / "ensemble.db").is_file()
    assert cfg.root_dir == str(project)
    assert cfg.application == "app.sh"
    assert (cfg.run_parse, cfg.run_copy, cfg.run_symlink) == ([], [], [])
    assert cfg.run_dir_names == "runs/{run_id}"
    assert cfg.app_interface is None
    assert (cfg.max_restarts, cfg.max_failed_runs) == (0, None)
    assert cfg.app_is_batch_script is True
    assert cfg.use_flux is False
    assert cfg.abort_on == []
    assert (cfg.template_engine, cfg.strict_templates) == ("tokens", True)
    assert not (project / "runs").exists()  # run directories appear only when prepared


def test_create_stores_every_option(project):
    (project / "iface.py").write_text("def post_run():\n    return 1\n")
    write_script(project / "in1.dat", "1")
    write_script(project / "in2.dat", "2")
    (project / "share").mkdir()
    with Ensemble.create(application=Path("app.sh"), runs=runs(2), run_parse=["deck.txt"], run_copy="in*.dat",
                         run_symlink="share", run_dir_names="out/x{x}", app_interface="iface.py",
                         setup_dir="custom/setup", max_restarts=None, max_failed_runs=4, app_is_batch_script=True,
                         use_flux="/opt/flux", abort_on=[7, 3, 7], template_engine="tokens",
                         strict_templates=False) as ens:
        cfg = ens.config
        assert ens.setup_dir == project / "custom" / "setup"
    assert cfg.application == "app.sh"
    assert cfg.run_parse == [str(project / "deck.txt")]
    assert cfg.run_copy == [str(project / "in1.dat"), str(project / "in2.dat")]
    assert cfg.run_symlink == [str(project / "share")]
    assert cfg.run_dir_names == "out/x{x}"
    assert cfg.app_interface == str(project / "iface.py")
    assert (cfg.max_restarts, cfg.max_failed_runs) == (None, 4)
    assert cfg.use_flux == "/opt/flux"
    assert cfg.abort_on == [3, 7]
    assert cfg.strict_templates is False
    assert Ensemble.exists("custom/setup") and not Ensemble.exists()
    with Ensemble("custom/setup") as ens:
        assert ens.config == cfg
        assert [d for _, d in ens.run_dirs(nonexistent=True)] == [str(project / "out/x0"), str(project / "out/x1")]


def test_abort_on_single_int(project):
    with create(abort_on=3) as ens:
        assert ens.config.abort_on == [3]


def test_create_empty_ensemble(project):
    with Ensemble.create() as ens:
        assert ens.count_by_status() == 0
        assert ens.progress() == (0, 0)
        assert ens.filter_by_status() == []


def test_run_ids_are_one_based_and_contiguous(project):
    with create(runs=runs(5)) as ens:
        assert ens.filter_by_status() == [1, 2, 3, 4, 5]
        assert [r["sample"] for r in ens.runs()] == [{"x": i} for i in range(5)]
        ens.add_runs([Run({"x": 10}), Run({"x": 11})])
        assert ens.filter_by_status() == list(range(1, 8))
        assert [r["sample"]["x"] for r in ens.runs([6, 7])] == [10, 11]


def test_run_ids_follow_iteration_order_of_a_generator(project):
    with create(runs=(Run({"x": i}) for i in (30, 10, 20))) as ens:
        assert [(r["id"], r["sample"]["x"]) for r in ens.runs()] == [(1, 30), (2, 10), (3, 20)]


def test_single_run_object_is_accepted(project):
    with create(runs=Run({"x": 1})) as ens:
        assert ens.filter_by_status() == [1]


def test_default_run_dirs_relative_to_cwd_at_create(project, monkeypatch):
    with create(runs=runs(3)) as ens:
        setup = ens.setup_dir
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with Ensemble(setup) as ens:
        assert ens.run_dirs(nonexistent=True) == [(i, str(project / "runs" / str(i))) for i in (1, 2, 3)]


def test_run_dir_names_uses_labels_and_run_id(project):
    samples = [Run({"x": 1, "name": "a"}), Run({"x": 2, "name": "b"})]
    with create(runs=samples, run_dir_names="hydro={x}/{name}-{run_id:03d}") as ens:
        assert ens.run_dirs(nonexistent=True) == [(1, str(project / "hydro=1/a-001")),
                                                  (2, str(project / "hydro=2/b-002"))]


def test_absolute_run_dir_names(project, tmp_path_factory):
    base = tmp_path_factory.mktemp("abs")
    with create(run_dir_names=f"{base}/r{{run_id}}") as ens:
        assert ens.run_dirs(nonexistent=True) == [(1, str(base / "r1")), (2, str(base / "r2"))]


def test_run_dirs_normalised_for_duplicate_detection(project):
    with pytest.raises(SpecError, match="another run"):
        create(runs=[Run({"d": "a"}), Run({"d": "./a"})], application=TRUE, app_is_batch_script=False,
               run_dir_names="runs/{d}")


def test_composite_runs_need_no_application(project):
    write_script(project / "step2.sh", "#!/bin/sh\necho %%run_id%%\n")
    run = CompositeRun({"x": 1}, [Step([TRUE], batch_script=False), Step("step2.sh --flag", cwd="sub")])
    with Ensemble.create(runs=[run]) as ens:
        steps = ens.runs()[0]["steps"]
    assert steps[0]["args"] == [TRUE]
    assert steps[1]["args"] == [str(project / "step2.sh"), "--flag"]
    assert steps[1]["cwd"] == "sub"
    assert steps[1]["batch_script"] is True


def test_application_resolved_against_cwd(project):
    with create() as ens:
        step = ens.runs()[0]["steps"][0]
    assert step["args"] == [str(project / "app.sh")]
    assert step["batch_script"] is True


def test_application_from_path(project, monkeypatch):
    write_script(project / "bin" / "mytool", "#!/bin/sh\necho %%x%%\n")
    monkeypatch.setenv("PATH", f"{project / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with create(application="mytool") as ens:
        assert ens.runs()[0]["steps"][0]["args"] == [str(project / "bin" / "mytool")]


def test_run_args_are_appended_to_application(project):
    with create(runs=[Run({"x": 1}, "-n 4 --name 'a b'", tasks=2, timeout=1.5)]) as ens:
        step = ens.runs()[0]["steps"][0]
    assert step["args"] == [str(project / "app.sh"), "-n", "4", "--name", "a b"]
    assert (step["tasks"], step["timeout"]) == (2, 1.5)


def test_binary_application_as_batch_script_warns_and_runs_plain(project):
    with pytest.warns(UserWarning, match="not a text script"):
        ens = create(application=TRUE, app_is_batch_script=True)
    with ens:
        steps = [r["steps"][0] for r in ens.runs()]
        assert all(s["batch_script"] is False and s["args"] == [TRUE] for s in steps)
        ens.dry_run()
        assert sorted(os.listdir(project / "runs" / "1")) == []


def test_binary_application_not_a_batch_script_is_silent(project, recwarn):
    with create(application=TRUE, app_is_batch_script=False) as ens:
        assert ens.runs()[0]["steps"][0]["batch_script"] is False
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_globs_for_copy_symlink_and_parse(project):
    for name in ("in1.dat", "in2.dat", "skip.txt"):
        (project / name).write_text(name)
    (project / "shared").mkdir()
    (project / "shared" / "big.bin").write_text("big")
    (project / "p1.deck").write_text("x=%%x%%\n")
    (project / "p2.deck").write_text("id=%%run_id%%\n")
    with create(run_copy=["in*.dat"], run_symlink="shar*", run_parse="*.deck", runs=runs(1)) as ens:
        assert ens.config.run_copy == [str(project / "in1.dat"), str(project / "in2.dat")]
        assert ens.config.run_symlink == [str(project / "shared")]
        assert ens.config.run_parse == [str(project / "p1.deck"), str(project / "p2.deck")]
        ens.dry_run()
    run_dir = project / "runs" / "1"
    assert sorted(os.listdir(run_dir)) == ["app.sh", "in1.dat", "in2.dat", "p1.deck", "p2.deck", "shared"]
    assert (run_dir / "in1.dat").read_text() == "in1.dat" and not (run_dir / "in1.dat").is_symlink()
    assert (run_dir / "shared").is_symlink() and os.readlink(run_dir / "shared") == str(project / "shared")
    assert (run_dir / "p1.deck").read_text() == "x=0\n"
    assert (run_dir / "p2.deck").read_text() == "id=1\n"


def test_create_overwrite_replaces(project):
    create(runs=runs(3)).close()
    with Ensemble.create_overwrite("app.sh", runs(1)) as ens:
        assert ens.count_by_status() == 1
    with Ensemble() as ens:
        assert ens.count_by_status() == 1
    assert leftovers(project) == [SETUP]


def test_create_overwrite_without_existing(project):
    with Ensemble.create_overwrite(application="app.sh", runs=runs(2), setup_dir="s2", template_engine="tokens") as ens:
        assert ens.count_by_status() == 2
    assert Ensemble.exists("s2")


def test_create_overwrite_rejects_unknown_or_duplicate_arguments(project):
    with pytest.raises(TypeError, match="bogus"):
        Ensemble.create_overwrite(application="app.sh", bogus=1)
    with pytest.raises(TypeError, match="application"):
        Ensemble.create_overwrite("app.sh", application="app.sh")
    assert not Ensemble.exists()


def test_create_resume_with_the_same_samples_changes_nothing(project):
    create(runs=runs(2)).close()
    before = snapshot(project)
    with Ensemble.create_resume(application="app.sh", runs=runs(2)) as ens:
        assert ens.count_by_status() == 2
    assert snapshot(project) == before


def test_create_resume_adds_only_the_new_samples(project):
    create(runs=runs(2)).close()
    with Ensemble.create_resume(application="app.sh", runs=runs(5)) as ens:
        assert ens.count_by_status() == 5
        assert [r["sample"] for r in ens.runs()] == [r.sample for r in runs(5)]


def test_create_resume_creates_when_missing(project):
    with Ensemble.create_resume("app.sh", runs(4), setup_dir="resumed") as ens:
        assert ens.count_by_status() == 4
    assert Ensemble.exists("resumed")


def test_open_missing_ensemble_is_an_error(project):
    with pytest.raises(EnsembleError, match="no ensemble") as info:
        Ensemble("nowhere")
    assert str(project / "nowhere") in str(info.value)
    assert not (project / "nowhere").exists()
    with pytest.raises(SpecTypeError, match="setup_dir"):
        Ensemble(None)


def test_clear_removes_setup_but_keeps_run_dirs_and_user_files(project):
    with create(runs=runs(2)) as ens:
        ens.dry_run()
    (project / "runs" / "1" / "output.dat").write_text("keep")
    Ensemble.clear()
    assert not (project / SETUP).exists()
    assert not Ensemble.exists()
    assert (project / "runs" / "1" / "output.dat").read_text() == "keep"
    assert (project / "app.sh").exists()
    Ensemble.clear()  # clearing nothing is fine


def test_clear_leaves_non_ensemble_directory_alone(project):
    (project / "other").mkdir()
    (project / "other" / "f").write_text("x")
    Ensemble.clear("other")
    assert (project / "other" / "f").read_text() == "x"


# -- database --------------------------------------------------------------------------------------------------------
def test_database_stores_json_not_pickle(project):
    with create(runs=[Run({"x": np.int64(1), "v": np.array([1.5, 2.5]), "s": "é"})]) as ens:
        ens.set_result(1, {"energy": np.float64(-1.25), "tags": ["a"]})
    conn = sqlite3.connect(db_path())
    try:
        sample, result, kinds = conn.execute(
            "SELECT sample, result, typeof(sample) || ',' || typeof(result) FROM runs WHERE id=1").fetchone()
    finally:
        conn.close()
    assert kinds == "text,text"
    assert json.loads(sample) == {"x": 1, "v": [1.5, 2.5], "s": "é"}
    assert json.loads(result) == {"energy": -1.25, "tags": ["a"]}


def test_schema_tables_and_wal_journal(project):
    create().close()
    if filesystem_type(project) in NETWORK_FS:
        pytest.skip("WAL is only used on local file systems")
    tables = {r[0] for r in sql(SETUP, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "attempts", "events"} <= tables
    assert sql(SETUP, "PRAGMA journal_mode")[0][0].lower() == "wal"


# -- status API ------------------------------------------------------------------------------------------------------
def set_status(run_id: int, status: RunStatus, **columns) -> None:
    assignments = ", ".join(["status=?", *(f"{k}=?" for k in columns)])
    sql(SETUP, f"UPDATE runs SET {assignments} WHERE id=?", (int(status), *columns.values(), run_id))


@pytest.fixture
def six(project) -> Ensemble:
    """An ensemble of six runs: success, failure, aborted, killed, queued, queued."""
    ens = create(runs=runs(6))
    for run_id, status in zip((1, 2, 3, 4), (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.ABORTED,
                                            RunStatus.KILLED)):
        set_status(run_id, status)
    yield ens
    ens.close()


def test_filter_by_status(six):
    assert six.filter_by_status() == [1, 2, 3, 4, 5, 6]
    assert six.filter_by_status(Ensemble.RUN_QUEUED) == [5, 6]
    assert six.filter_by_status(Ensemble.RUN_SUCCESS, Ensemble.RUN_KILLED) == [1, 4]
    assert six.filter_by_status("failure") == [2]
    assert six.filter_by_status(3) == [3]
    with pytest.raises(ValueError, match="'bogus'"):
        six.filter_by_status("bogus")


def test_count_by_status(six):
    assert six.count_by_status() == 6
    assert six.count_by_status(Ensemble.RUN_QUEUED) == 2
    assert six.count_by_status(Ensemble.RUN_ABORTED, Ensemble.RUN_KILLED) == 2
    assert six.count_by_status(Ensemble.RUN_SUCCESS, Ensemble.RUN_SUCCESS) == 1


def test_progress_counts_aborted_and_killed_as_completed(six):
    assert six.progress() == (4, 6)
    set_status(5, RunStatus.ABORTED)
    assert six.progress() == (5, 6)


def test_status_counts(six):
    sql(SETUP, "UPDATE runs SET claimed_by='m1' WHERE id=5")
    assert six.status_counts() == {"queued": 2, "success": 1, "failure": 1, "aborted": 1, "killed": 1,
                                   "running": 1, "total": 6}
    assert six.count_running() == 1


def test_run_dirs_nonexistent(project):
    with create(runs=runs(3)) as ens:
        expected = [(i, str(project / "runs" / str(i))) for i in (1, 2, 3)]
        assert ens.run_dirs() == []
        assert ens.run_dirs(nonexistent=True) == expected
        (project / "runs" / "2").mkdir(parents=True)
        assert ens.run_dirs() == [expected[1]]
        ens.dry_run(3)
        assert ens.run_dirs() == expected[1:]


def test_add_runs(project):
    with create(runs=runs(2)) as ens:
        ens.add_runs([Run({"x": 7})])
        ens.add_runs(Run({"x": 8}))
        ens.add_runs([])
        assert ens.filter_by_status() == [1, 2, 3, 4]
        assert ens.runs([3])[0]["sample"] == {"x": 7}
        assert ens.runs([4])[0]["run_dir"] == str(project / "runs" / "4")
        assert ens.runs([4])[0]["status"] == RunStatus.QUEUED


def test_add_runs_rejects_bad_runs_and_adds_none(project):
    with create(runs=runs(2), run_dir_names="runs/{x}") as ens:
        with pytest.raises(SpecError, match="another run"):
            ens.add_runs([Run({"x": 5}), Run({"x": 1})])
        with pytest.raises(SpecTypeError, match=r"runs\[1\]"):
            ens.add_runs([Run({"x": 6}), 3])
        with pytest.raises(TemplateError, match="%%x%%"):
            ens.add_runs([Run({"y": 6})])
        assert ens.filter_by_status() == [1, 2]


def test_dequeue_runs(six):
    six.dequeue_runs([1, 2, 5])
    statuses = {r["id"]: r["status"] for r in six.runs()}
    assert statuses == {1: RunStatus.SUCCESS, 2: RunStatus.FAILURE, 3: RunStatus.ABORTED, 4: RunStatus.KILLED,
                        5: RunStatus.KILLED, 6: RunStatus.QUEUED}
    six.dequeue_runs(6)
    assert six.filter_by_status(Ensemble.RUN_QUEUED) == []


def test_requeue_runs_soft_and_hard(six):
    set_status(1, RunStatus.SUCCESS, step=2, restarts=3, message="done")
    set_status(2, RunStatus.FAILURE, step=1, restarts=2)
    sql(SETUP, "UPDATE runs SET step=1, restarts=1 WHERE id=5")
    six.requeue_runs([1])
    six.requeue_runs([2, 5], hard=True)
    rows = {r["id"]: r for r in six.runs()}
    assert (rows[1]["status"], rows[1]["step"], rows[1]["restarts"], rows[1]["message"]) == \
        (RunStatus.QUEUED, 2, 3, None)
    assert (rows[2]["status"], rows[2]["step"], rows[2]["restarts"]) == (RunStatus.QUEUED, 0, 0)
    assert (rows[5]["status"], rows[5]["step"], rows[5]["restarts"]) == (RunStatus.QUEUED, 1, 1)
    assert rows[3]["status"] == RunStatus.ABORTED
    with pytest.raises(SpecTypeError, match="hard"):
        six.requeue_runs([3], hard="yes")
    assert six.runs([3])[0]["status"] == RunStatus.ABORTED


def test_set_result(six):
    six.set_result(1, {"a": 1.5, "b": [1, 2]})
    six.set_result(2, 42)
    six.set_result(3, np.float64(0.5))
    six.set_result(4, "text")
    results = {r["id"]: r["result"] for r in six.runs()}
    assert results == {1: {"a": 1.5, "b": [1, 2]}, 2: 42, 3: 0.5, 4: "text", 5: None, 6: None}
    six.set_result(1, None)
    assert six.runs([1])[0]["result"] is None


@pytest.mark.parametrize("bad", [object(), {1, 2}, {"a": object()}])
def test_set_result_rejects_non_json(six, bad):
    six.set_result(1, {"ok": 1})
    with pytest.raises(TypeError) as info:
        six.set_result(1, bad)
    assert "result" in str(info.value)
    assert six.runs([1])[0]["result"] == {"ok": 1}


def test_on_completion_stored(project):
    with create() as ens:
        ens.on_completion(["/usr/bin/python3", "-v", "post.py"], cwd="post", stdout="out.log")
        ens.on_completion("/bin/echo done", stderr=Path("err.log"))
    (value,) = sql(SETUP, "SELECT value FROM meta WHERE key='on_completion'")[0]
    assert json.loads(value) == {"args": ["/bin/echo", "done"], "cwd": str(project), "stdout": None,
                                 "stderr": str(project / "err.log")}


def test_on_completion_rejects_bad_input(project):
    with create() as ens:
        with pytest.raises(SpecError, match="on_completion.args"):
            ens.on_completion([])
        with pytest.raises(SpecTypeError, match="on_completion.stdout"):
            ens.on_completion(["/bin/true"], stdout=5)
    assert sql(SETUP, "SELECT value FROM meta WHERE key='on_completion'") == []


@pytest.mark.parametrize("call", [
    lambda e: e.dequeue_runs([1, 99]),
    lambda e: e.requeue_runs([99, 1]),
    lambda e: e.set_result(99, 1),
    lambda e: e.dry_run(1, 99),
    lambda e: e.call_post_run(99),
])
def test_unknown_run_ids_are_clear_errors_and_change_nothing(six, call, project):
    before = [(r["status"], r["result"]) for r in six.runs()]
    with pytest.raises(SpecError, match="no run 99"):
        call(six)
    assert [(r["status"], r["result"]) for r in six.runs()] == before
    assert not (project / "runs").exists()


@pytest.mark.parametrize("call", [
    lambda e: e.dequeue_runs("1"),
    lambda e: e.dequeue_runs([1.0]),
    lambda e: e.requeue_runs([True]),
    lambda e: e.set_result("1", 1),
])
def test_run_ids_must_be_integers(six, call):
    with pytest.raises(SpecTypeError, match="run_id"):
        call(six)


def test_set_result_with_list_run_id_names_the_field(six):
    with pytest.raises(SpecTypeError, match="run_id"):
        six.set_result([1], 5)


def test_numpy_run_ids_accepted(six):
    frame = six.as_dataframe()
    six.requeue_runs(frame.index[frame["status"] == "failure"].to_numpy())
    assert six.runs([2])[0]["status"] == RunStatus.QUEUED
