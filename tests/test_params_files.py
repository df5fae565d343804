"""ensemble.params.read_samples: CSV, JSON and YAML files, and one clear error naming the file for each problem."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ensemble import EnsembleError, SpecError, SpecTypeError
from ensemble.params import missing, read_samples

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [{"x": 1, "y": "a"}, {"x": 2.5, "y": "b"}]


@pytest.mark.parametrize("name, text", [
    ("s.csv", "x,y\n1,a\n2.5,b\n"),
    ("s.json", '[{"x": 1, "y": "a"}, {"x": 2.5, "y": "b"}]'),
    ("s.yaml", "- {x: 1, y: a}\n- x: 2.5\n  y: b\n"),
    ("S.YML", "- {x: 1, y: a}\n- {x: 2.5, y: b}\n"),
])
def test_each_format_reads_the_same_samples(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert read_samples(tmp_path / name) == SAMPLES
    assert read_samples(str(tmp_path / name)) == SAMPLES


def test_format_argument_overrides_the_suffix(tmp_path):
    (tmp_path / "designs.txt").write_text("- {x: 1, y: a}\n- {x: 2.5, y: b}\n")
    assert read_samples(tmp_path / "designs.txt", format="yaml") == SAMPLES


def test_json_and_yaml_keep_nested_values_and_types(tmp_path):
    (tmp_path / "s.json").write_text('[{"shape": [1, 2], "opts": {"k": true}, "s": "1", "none": null}]')
    assert read_samples(tmp_path / "s.json") == [{"shape": [1, 2], "opts": {"k": True}, "s": "1", "none": None}]


def test_samples_read_back_compare_with_a_space(tmp_path):
    (tmp_path / "done.json").write_text('[{"x": 1.0, "energy": -2}]')
    assert missing([{"x": 1}, {"x": 2}], read_samples(tmp_path / "done.json")) == [{"x": 2}]


BAD = [
    ("s.json", "", EnsembleError, "samples: '{path}' is empty (expected a list with one sample per run)"),
    ("s.yaml", "  \n", EnsembleError, "samples: '{path}' is empty"),
    ("s.json", '[{"x": 1},\n {"x": }]', EnsembleError, "samples: '{path}' line 2 column 8: Expecting value"),
    ("s.yaml", "- {x: 1}\n- {x: 2\n", EnsembleError, "samples: '{path}' line 3 column 1: expected ',' or '}}'"),
    ("s.json", '{"x": 1}', EnsembleError, "samples: '{path}': expected a list with one sample per run, got dict {{'x': 1}}"),
    ("s.yaml", "x: [1, 2]\n", EnsembleError, "samples: '{path}': expected a list with one sample per run, got dict"),
    ("s.json", "5", EnsembleError, "samples: '{path}': expected a list with one sample per run, got int 5"),
    ("s.json", "[]", EnsembleError, "samples: '{path}' holds an empty list (expected one sample per run)"),
    ("s.json", '[{"x": 1}, 5]', EnsembleError, "samples: '{path}'[1]: expected a mapping of labels to values, got 5"),
    ("s.yaml", "- {x: 1}\n- null\n", EnsembleError, "samples: '{path}'[1]: expected a mapping of labels to values, "
                                                     "got None"),
    ("s.yaml", "- {1: 2}\n", SpecTypeError, "samples: '{path}'[0]: labels must be strings, got 1"),
    ("s.json", '[{"x": NaN}]', SpecError, "samples: '{path}'[0]['x']: NaN and infinity cannot be stored"),
    ("s.yaml", "- {x: .inf}\n", SpecError, "samples: '{path}'[0]['x']: NaN and infinity cannot be stored"),
    ("s.yaml", "- {when: 2024-01-02}\n", SpecTypeError, "samples: '{path}'[0]: "),
    ("s.json", '[{"x": "a\\u0000b"}]', SpecError, "samples: '{path}'[0]['x']: must not contain a NUL byte"),
    ("s.csv", "x,y\n", EnsembleError, "samples: '{path}' has a header but no rows"),
    ("s.csv", "x,y\n1,2,3\n", EnsembleError, "samples: '{path}' line 2 has a different number of fields"),
    ("s.txt", "x\n1\n", EnsembleError, "samples: '{path}': cannot tell the format from the suffix '.txt' "
                                       "(use .csv, .json, .yaml, .yml or pass format="),
]


@pytest.mark.parametrize("name, text, error, message", BAD)
def test_bad_files_raise_one_error_naming_the_file(tmp_path, name, text, error, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(error) as caught:
        read_samples(path)
    assert message.format(path=path) in str(caught.value)
    assert isinstance(caught.value, EnsembleError) and "\n" not in str(caught.value)


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(EnsembleError, match=r"samples: cannot read '.*nope\.json': No such file or directory"):
        read_samples(tmp_path / "nope.json")
    (tmp_path / "s.yaml").write_bytes(b"- {x: \xff}\n")
    with pytest.raises(EnsembleError, match=r"samples: '.*s\.yaml' is not UTF-8 text \(invalid start byte at byte 6\)"):
        read_samples(tmp_path / "s.yaml")


def test_unknown_format_argument(tmp_path):
    with pytest.raises(EnsembleError, match=r"samples: format must be one of 'csv', 'json', 'yaml', got 'toml'"):
        read_samples(tmp_path / "s.toml", format="toml")


def test_the_docs_error_examples_are_real(workdir):
    """docs/params.rst shows three errors; these files produce exactly those lines."""
    text = (ROOT / "docs" / "params.rst").read_text()
    shown = re.search(r"\.\. code-block:: text\n\n((?:    samples: .*\n)+)", text).group(1).split("\n")
    files = [("designs.json", '[{"x": 1}, {"x": 2}, {"x": 3}, 5]'),
             ("designs.yaml", "- {x: 1}\n- {x: 2}\n- {x: 3}\n  - x: 4\n"),
             ("designs.json", '[{"x": NaN}]')]
    messages = []
    for name, content in files:
        (workdir / name).write_text(content)
        with pytest.raises(EnsembleError) as caught:
            read_samples(name)
        messages.append(str(caught.value))
    assert [line.strip() for line in shown if line.strip()] == messages
