"""Bad sample CSVs: one clear line naming the file and the line, and nothing created."""
from __future__ import annotations

import pytest

from ensemble.cli import main

CASES = {
    "empty": ("", "'empty.csv' is empty"),
    "header_only": ("x,y\n", "'header_only.csv' has a header but no rows"),
    "repeated": ("x,y,x\n1,2,3\n", "'repeated.csv' line 1 names column(s) 'x' more than once"),
    "unclosed": ('x,y\n1,2\n3,"abc\n4,5\n', "'unclosed.csv' line 3: unexpected end of data (an unclosed quote"),
    "fields": ("x,y\n1,2,3\n", "'fields.csv' line 2 has a different number of fields"),
    "not_utf8": (b"x\n\xff\xfe\n", "'not_utf8.csv' is not UTF-8 text"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_csv_is_one_clear_line_and_creates_nothing(workdir, capsys, name):
    text, message = CASES[name]
    path = workdir / f"{name}.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["--setup-dir", "s", "create", path.name, "--application", "/bin/true", "--no-batch-script"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (workdir / "s").exists()
