"""Execution engine and GPUs, end to end: the ids steps see when the manager runs with
``CUDA_VISIBLE_DEVICES=2,3``.

No GPU exists on the test machines; the variable is set with monkeypatch before execution, so
detection takes ``2`` and ``3`` as this host's device ids and the real engine binds steps to them.
"""
from __future__ import annotations

from pathlib import Path

from engine_helpers import attempts_by_run, create, execute, run, run_row, sh

from ensemble.status import RunStatus

RECORD = 'echo "$CUDA_VISIBLE_DEVICES" > gpu.txt; echo "${ROCR_VISIBLE_DEVICES-unset}" > rocr.txt'


def test_steps_see_the_managers_device_ids_and_gpu_less_steps_see_none(edir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    ens = create([run(0, sh(RECORD, gpus_per_task=1)), run(1, sh(RECORD, gpus_per_task=1)),
                  run(2, sh(RECORD, gpus_per_task=0))])
    execute(ens, cores=3)
    seen = {}
    for run_id in (1, 2, 3):
        row = run_row(ens, run_id)
        assert row["status"] is RunStatus.SUCCESS, row["message"]
        seen[run_id] = (Path(row["run_dir"], "gpu.txt").read_text(), Path(row["run_dir"], "rocr.txt").read_text())
    assert sorted([seen[1], seen[2]]) == [("2\n", "2\n"), ("3\n", "3\n")]
    assert seen[3] == ("\n", "\n")
    by_run = attempts_by_run(ens)
    assert sorted(by_run[1][0]["placement"][0]["gpus"] + by_run[2][0]["placement"][0]["gpus"]) == ["2", "3"]
    assert by_run[3][0]["placement"][0]["gpus"] == []
