"""The inbox: bad commands are rejected one by one and never block the commands after them."""
from __future__ import annotations

import json
from pathlib import Path

from ensemble import Ensemble, Run
from ensemble.setup.control import ingest, pending, post
from ensemble.status import RunStatus


def make(workdir: Path) -> Ensemble:
    return Ensemble.create(application="/bin/true", runs=[Run({"x": i}) for i in range(3)],
                           app_is_batch_script=False)


def test_malformed_commands_are_rejected_and_later_ones_apply(workdir):
    ens = make(workdir)
    inbox = ens.setup_dir / "inbox"
    (inbox / "00000000000000000001-a.json").write_text("{not json")
    (inbox / "00000000000000000002-b.json").write_text("[1]")
    post(ens.setup_dir, {"op": "dequeue", "run_ids": [10**30]})
    post(ens.setup_dir, {"op": "on_completion", "spec": "oops"})
    post(ens.setup_dir, {"op": "frobnicate"})
    post(ens.setup_dir, {"op": "dequeue", "run_ids": [2]})
    applied = ingest(ens.store, ens.config, ens.setup_dir)
    assert len(applied.errors) == 5
    assert pending(ens.setup_dir) == []
    assert ens.runs([2])[0]["status"] is RunStatus.KILLED
    assert ens.store.get_meta("on_completion") is None
    rejected = [e["detail"]["file"] for e in ens.events() if e["kind"] == "command_rejected"]
    assert len(rejected) == 5
    assert not ingest(ens.store, ens.config, ens.setup_dir).changed


def test_each_command_applies_once_even_if_its_file_is_left_behind(workdir):
    ens = make(workdir)
    path = post(ens.setup_dir, {"op": "set_result", "run_id": 1, "result": {"v": 1}})
    copy = path.read_text()
    ingest(ens.store, ens.config, ens.setup_dir)
    path.write_text(copy)  # as if the process died after committing, before deleting the file
    post(ens.setup_dir, {"op": "set_result", "run_id": 1, "result": {"v": 2}})
    ingest(ens.store, ens.config, ens.setup_dir)
    path.write_text(json.dumps({"op": "set_result", "run_id": 1, "result": {"v": 1}}))
    ingest(ens.store, ens.config, ens.setup_dir)
    assert ens.runs([1])[0]["result"] == {"v": 2}
