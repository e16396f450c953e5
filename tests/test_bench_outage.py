"""Smoke test of benchmarks/bench_outage.py: a 2 s outage run of DataFerry alone (~3 s).

The figures are the benchmark's business; this checks that the script still runs its whole
schedule against a real redis-server and reports every phase, and that no DataFerry call
raised while Redis was frozen, killed and restarted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_outage_benchmark_runs_every_phase() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_outage.py",
            "--seconds=2",
            "--only=dataferry",
            "--tasks=2",
            "--threads=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if "| dataferry |" in line]
    phases = [row.split("|")[1].strip().split(" (")[0] for row in rows]
    assert phases == ["steady", "frozen", "steady 2", "down", "recovered"]
    errors = [int(row.split("|")[4].replace(",", "")) for row in rows]
    assert errors == [0] * 5
    events = next(line for line in done.stdout.splitlines() if "events at (s):" in line)
    assert [part.split()[0] for part in events.split(":")[1].split(",")] == [
        "freeze",
        "resume",
        "kill",
        "restart",
    ]
