"""Templating of parsed files and batch scripts, and dry runs."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import SETUP, is_executable, snapshot, write_script

from ensemble import CompositeRun, Ensemble, Run, SpecError, Step, TemplateError
from ensemble.spec.templating import Template


def render(text: str, values: dict, engine: str = "tokens", strict: bool = True) -> str:
    return Template("deck.txt", text, engine, strict).render(values)


# -- the token engine ----------------------------------------------------------------------------------------------------
def test_tokens_are_replaced_with_formatted_values():
    text = "i=%%i%% f=%%f%% s=%%s%% l=%%l%% d=%%d%% b=%%b%% n=%%n%% twice=%%i%%%%i%%\n"
    values = {"i": 3, "f": 0.25, "s": "a b", "l": [1, 2], "d": {"k": "v"}, "b": True, "n": None}
    assert render(text, values) == 'i=3 f=0.25 s=a b l=[1, 2] d={"k": "v"} b=True n=None twice=33\n'


def test_other_percent_and_brace_text_survives():
    text = ('echo "100%%"\nn=${#a[@]}\nprintf "%%d%%" 5\n%% %%%% %%1%% %%a-b%% %%\n'
            'echo {{ x }} {% raw %} {# c #}\n')
    assert render(text, {"x": 1, "d": "D"}) == text.replace("%%d%%", "D")


def test_escaped_token_is_literal_and_not_checked():
    text = "a=\\%%x%% b=%%x%% c=\\%%unknown%%\n"
    template = Template("deck.txt", text)
    assert template.tokens() == {"x": 1}
    assert template.render({"x": 5}) == "a=%%x%% b=5 c=%%unknown%%\n"


def test_unknown_token_names_file_line_and_token():
    with pytest.raises(TemplateError) as info:
        render("line one\nline two\nvalue = %%missing%%\n", {"x": 1})
    message = str(info.value)
    assert "deck.txt" in message and "line 3" in message and "%%missing%%" in message


def test_check_reports_first_unknown_token_with_line():
    template = Template("deck.txt", "%%a%%\n\n%%b%% %%c%%\n")
    assert template.tokens() == {"a": 1, "b": 3, "c": 3}
    template.check({"a", "b", "c"})
    with pytest.raises(TemplateError, match=r"deck.txt, line 3: unknown token %%b%%"):
        template.check({"a"})
    Template("deck.txt", "%%zz%%", strict=False).check(set())


def test_non_strict_keeps_unknown_tokens():
    assert render("%%x%% %%y%%\n", {"x": 1}, strict=False) == "1 %%y%%\n"


def test_load_rejects_binary_and_non_utf8(tmp_path):
    (tmp_path / "bin").write_bytes(b"abc\0def")
    (tmp_path / "latin").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(TemplateError, match="binary"):
        Template.load(tmp_path / "bin")
    with pytest.raises(TemplateError, match="UTF-8"):
        Template.load(tmp_path / "latin")


# -- the jinja engine (opt-in) ------------------------------------------------------------------------------------------
def test_jinja_renders_without_html_escaping():
    text = "{{ s }} {{ sample.n + 1 }} %%s%%\n{% for i in range(n) %}{{ i }}{% endfor %}\n"
    assert render(text, {"s": "<&>", "n": 3}, engine="jinja") == "<&> 4 %%s%%\n012\n"


def test_jinja_strict_undefined_raises_naming_file_and_name():
    with pytest.raises(TemplateError) as info:
        render("ok\n{{ nope }}\n", {"x": 1}, engine="jinja")
    assert "deck.txt" in str(info.value) and "nope" in str(info.value)


def test_jinja_non_strict_renders_undefined_empty():
    assert render("[{{ nope }}]", {}, engine="jinja", strict=False) == "[]"


def test_jinja_syntax_error_is_template_error():
    with pytest.raises(TemplateError, match="deck.txt"):
        render("{{ x ", {"x": 1}, engine="jinja")


def test_jinja_sample_label_named_sample():
    assert render("{{ sample }}|{{ x }}", {"sample": "s1", "x": 2}, engine="jinja") == "s1|2"


# -- through an ensemble ------------------------------------------------------------------------------------------------
@pytest.fixture
def deck(workdir: Path) -> Path:
    return write_script(workdir / "input.deck", "x=%%x%%\nload=100%%\nn=${#a[@]}\nlit=\\%%x%%\njinja={{ x }}\n",
                        0o640)


def test_run_parse_rendered_into_run_dirs_keeping_mode(deck, workdir):
    with Ensemble.create(application="/bin/true", app_is_batch_script=False, run_parse="input.deck",
                         runs=[Run({"x": 1}), Run({"x": "two"})]) as ens:
        prepared = ens.dry_run()
        assert [p.run_id for p in prepared] == [1, 2]
        assert prepared[0].parsed == [os.path.join(prepared[0].run_dir, "input.deck")]
        assert prepared[0].describe().endswith("\tparsed input.deck")
    first = workdir / "runs" / "1" / "input.deck"
    assert first.read_text() == "x=1\nload=100%%\nn=${#a[@]}\nlit=%%x%%\njinja={{ x }}\n"
    assert (workdir / "runs" / "2" / "input.deck").read_text().startswith("x=two\n")
    assert stat.S_IMODE(first.stat().st_mode) == 0o640
    assert deck.read_text().startswith("x=%%x%%")  # the source is untouched


def test_unknown_token_in_run_parse_fails_create_naming_file_line_token(workdir):
    write_script(workdir / "input.deck", "a=1\nb=%%x%%\nc=%%zz%%\n", 0o644)
    before = snapshot(workdir)
    with pytest.raises(TemplateError) as info:
        Ensemble.create(application="/bin/true", app_is_batch_script=False, run_parse="input.deck",
                        runs=[Run({"x": 1})])
    message = str(info.value)
    assert str(workdir / "input.deck") in message
    assert "line 3" in message and "%%zz%%" in message
    assert snapshot(workdir) == before


def test_non_strict_ensemble_keeps_unknown_tokens(workdir):
    write_script(workdir / "input.deck", "x=%%x%% y=%%y%%\n", 0o644)
    write_script(workdir / "app.sh", "#!/bin/sh\necho %%other%% %%x%%\n")
    with Ensemble.create(application="app.sh", run_parse="input.deck", runs=[Run({"x": 1})],
                         strict_templates=False) as ens:
        ens.dry_run()
    assert (workdir / "runs" / "1" / "input.deck").read_text() == "x=1 y=%%y%%\n"
    assert (workdir / "runs" / "1" / "app.sh").read_text() == "#!/bin/sh\necho %%other%% 1\n"


def test_jinja_is_opt_in(deck, workdir):
    with Ensemble.create(runs=[CompositeRun({"x": 1}, [Step(["/bin/true"], batch_script=False)])],
                         run_parse="input.deck") as ens:
        assert ens.config.template_engine == "tokens"
        ens.dry_run()
    assert (workdir / "runs" / "1" / "input.deck").read_text().endswith("jinja={{ x }}\n")


def test_jinja_engine_in_ensemble(workdir):
    write_script(workdir / "input.j2", "{{ s }} {{ n * 2 }} %%n%%\n", 0o644)
    with Ensemble.create(runs=[CompositeRun({"s": "<a & b>", "n": 2}, [Step(["/bin/true"], batch_script=False)])],
                         run_parse="input.j2", template_engine="jinja") as ens:
        ens.dry_run()
    assert (workdir / "runs" / "1" / "input.j2").read_text() == "<a & b> 4 %%n%%\n"


def test_jinja_undefined_fails_dry_run(workdir):
    write_script(workdir / "input.j2", "a\n{{ undefined_thing }}\n", 0o644)
    with Ensemble.create(runs=[CompositeRun({"n": 2}, [Step(["/bin/true"], batch_script=False)])],
                         run_parse="input.j2", template_engine="jinja") as ens, pytest.raises(TemplateError) as info:
        ens.dry_run()
    assert "input.j2" in str(info.value) and "undefined_thing" in str(info.value)


def test_launch_and_reserved_tokens(workdir):
    write_script(workdir / "app.sh", "#!/bin/sh\n[%%ensemble_launch%%][%%themis_launch%%] %%run_id%% %%run_dir%%\n")
    with Ensemble.create(application="app.sh", runs=[Run({"x": 1}), Run({"x": 2})]) as ens:
        ens.dry_run(2)
    assert (workdir / "runs" / "2" / "app.sh").read_text() == f"#!/bin/sh\n[][] 2 {workdir / 'runs' / '2'}\n"
    assert not (workdir / "runs" / "1").exists()


@pytest.mark.parametrize("label", ["ensemble_launch", "themis_launch", "run_id", "run_dir"])
def test_reserved_tokens_cannot_be_sample_labels(workdir, label):
    with pytest.raises(SpecError, match=label):
        Ensemble.create(application="/bin/true", app_is_batch_script=False, runs=[Run({label: 1})])
    assert not Ensemble.exists()


def test_batch_scripts_copied_into_step_cwd_with_exec_bit(workdir):
    write_script(workdir / "pre.sh", "#!/bin/sh\necho pre %%x%%\n", 0o750)
    write_script(workdir / "main.sh", "#!/bin/sh\necho main %%run_id%%\n", 0o755)
    run = CompositeRun({"x": 9}, [Step("pre.sh", cwd="prep"), Step("main.sh -v"), Step("/bin/true", batch_script=False)])
    with Ensemble.create(runs=[run]) as ens:
        ens.dry_run()
    run_dir = workdir / "runs" / "1"
    pre, main = run_dir / "prep" / "pre.sh", run_dir / "main.sh"
    assert pre.read_text() == "#!/bin/sh\necho pre 9\n"
    assert main.read_text() == "#!/bin/sh\necho main 1\n"
    assert is_executable(pre) and is_executable(main)
    assert stat.S_IMODE(pre.stat().st_mode) == 0o750
    assert sorted(os.listdir(run_dir)) == ["main.sh", "prep"]


def test_batch_script_with_absolute_cwd(workdir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("abs")
    write_script(workdir / "s.sh", "#!/bin/sh\necho %%x%%\n")
    with Ensemble.create(runs=[CompositeRun({"x": 4}, [Step("s.sh", cwd=str(elsewhere))])]) as ens:
        ens.dry_run()
    assert (elsewhere / "s.sh").read_text() == "#!/bin/sh\necho 4\n"


def test_dry_run_verbosity(workdir, capsys):
    with Ensemble.create(application="/bin/true", app_is_batch_script=False,
                         runs=[Run({"x": 1}), Run({"x": 2})]) as ens:
        assert [p.run_id for p in ens.dry_run(verbosity=0)] == [1, 2]
        assert capsys.readouterr().out == ""
        assert [p.run_id for p in ens.dry_run(2, verbosity=1)] == [2]
        assert capsys.readouterr().out == f"dry run 2: prepared {workdir / 'runs' / '2'}\n"
        with pytest.raises(TypeError, match="verbosity"):
            ens.dry_run(verbosity="loud")


def test_dry_run_calls_prep_run_in_run_dir(workdir):
    (workdir / "iface.py").write_text(
        "import json, os\n"
        "def prep_run(run_id, sample, run_dir):\n"
        "    with open('prepped.json', 'w') as f:\n"
        "        json.dump({'id': run_id, 'sample': sample, 'cwd': os.getcwd(), 'run_dir': run_dir,\n"
        "                   'env': os.environ.get('ENSEMBLE_RUN_ID')}, f)\n")
    with Ensemble.create(application="/bin/true", app_is_batch_script=False, app_interface="iface.py",
                         runs=[Run({"x": 1}), Run({"x": 2})]) as ens:
        ens.dry_run()
    for run_id in (1, 2):
        run_dir = workdir / "runs" / str(run_id)
        data = json.loads((run_dir / "prepped.json").read_text())
        assert data == {"id": run_id, "sample": {"x": run_id}, "cwd": str(run_dir), "run_dir": str(run_dir),
                        "env": str(run_id)}
    assert Path.cwd() == workdir
    assert "ENSEMBLE_RUN_ID" not in os.environ


def test_dry_run_is_repeatable(workdir):
    write_script(workdir / "data.txt", "d", 0o644)
    (workdir / "shared").mkdir()
    with Ensemble.create(application="/bin/true", app_is_batch_script=False, run_copy="data.txt",
                         run_symlink="shared", runs=[Run({"x": 1})]) as ens:
        ens.dry_run()
        ens.dry_run()
    run_dir = workdir / "runs" / "1"
    assert (run_dir / "data.txt").read_text() == "d"
    assert os.readlink(run_dir / "shared") == str(workdir / "shared")
    assert not (workdir / SETUP / "runs").exists()


def test_rendering_changes_nothing_but_the_tokens(tmp_path):
    # CRLF line endings, a lone CR, no final newline: all kept byte for byte.
    src = tmp_path / "deck.in"
    src.write_bytes(b"a = %%x%%\r\nb = 2\rc = 3\r\n\r\nlast %%x%%")
    Template.load(src).render_to(tmp_path / "out.in", {"x": 7})
    assert (tmp_path / "out.in").read_bytes() == b"a = 7\r\nb = 2\rc = 3\r\n\r\nlast 7"
