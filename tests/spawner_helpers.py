"""The spawner binary spoken to line by line, for the spawner's and the chained starts' tests."""
from __future__ import annotations

import json
import os
import select
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ensemble.executors.spawner import spawner_binary


def needs_spawner() -> None:
    """Skip without a C compiler; in CI, fail instead."""
    if spawner_binary() is None:
        reason = "the spawner needs a C compiler (cc): apt-get install gcc"
        if os.environ.get("CI") == "true":
            pytest.fail(f"spawner tests cannot be skipped in CI: {reason}")
        pytest.skip(reason)


class Spawner:
    """The spawner binary as a child of the test, spoken to line by line."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen([str(spawner_binary()), str(os.getpid())], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True)
        self.pending = b""
        assert self.recv()["op"] == "ready"

    def send(self, **message: Any) -> None:
        self.popen.stdin.write(json.dumps(message).encode() + b"\n")
        self.popen.stdin.flush()

    def recv(self, timeout: float = 30.0) -> dict[str, Any]:
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
            assert ready, "the spawner said nothing"
            data = os.read(self.popen.stdout.fileno(), 65536)
            assert data, "the spawner ended"
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def start(self, key: int, argv: list[str], where: Path, **extra: Any) -> dict[str, Any]:
        request = {"op": "start", "id": key, "argv": argv, "cwd": str(where), "env": {},
                   "stdout": str(where / f"{key}.out"), "stderr": str(where / f"{key}.err"), "tag": f"t/{key}.1"}
        self.send(**{**request, **extra})
        return self.recv()

    def close(self) -> int:
        self.popen.stdin.close()
        return self.popen.wait(30)
