"""Long-term memory survives SIGKILL mid-write: intact file, at most the in-flight batch lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sedma.memory.long_term import LongTermMemory

BATCH = 200
MIN_BATCHES = 15
DEADLINE_S = 20.0

WRITER = f"""
import sys
from sedma.memory.long_term import LongTermMemory
from sedma.memory.series import IntervalAggregate

ltm = LongTermMemory(sys.argv[1])
run_id = ltm.start_run("crash", "local", "writer", {{}})
batch = 0
while True:
    batch += 1
    rows = [
        IntervalAggregate(f"node-{{i}}", "tile_ms", 3, 1.0 * batch, 0.5, 2.0, 1.5,
                          float(batch), float(batch) + 0.5)
        for i in range({BATCH})
    ]
    ltm.record_observations(run_id, rows)
    sys.stdout.write(f"{{batch}}\\n")
    sys.stdout.flush()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_mid_loop_loses_at_most_the_in_flight_batch(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    printed = 0
    deadline = time.monotonic() + DEADLINE_S
    try:
        while printed < MIN_BATCHES:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer exited early: {proc.stderr.read()}")  # type: ignore[union-attr]
            printed = int(line)
            assert time.monotonic() < deadline, "writer too slow"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        # Lines already in the pipe were committed before the kill: count them too.
        rest, _ = proc.communicate(timeout=10)
    for line in rest.split():
        printed = max(printed, int(line))
    assert proc.returncode == -signal.SIGKILL

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = raw.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
        batches = raw.execute("SELECT COUNT(DISTINCT t_first) FROM observations").fetchone()[0]
    raw.close()
    assert rows % BATCH == 0, "a batch was half-written"
    assert rows // BATCH == batches
    assert printed <= batches <= printed + 1

    with LongTermMemory(path) as ltm:
        assert ltm.stats()["observations"] == rows
        assert ltm.runs()[0].context_key == "crash"
