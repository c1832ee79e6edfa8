"""How long a run takes to end after Ctrl-C in the middle of a regression gate.

Runs pytest in a subprocess against the embedded emulator: an undecidable gate (identical
models, budget 1000) whose calls take about 2 s each, ``--bedrock-concurrency 4``. Once
the gate has been drawing pairs for a second, SIGINT is sent; the figure is the time from
the signal to the process's exit, JSON report and JUnit XML written. Repeated ``--runs``
times (default 5)::

    python benchmarks/interrupt.py
    python benchmarks/interrupt.py --runs 10

The gate draws pairs lazily in daemon threads, so the exit does not wait for the calls in
flight (a pool would finish every pair queued for the current look first: tens of seconds
here). POSIX only (SIGINT to a child).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = "amazon.titan-text-express-v1"
CANDIDATE = "arn:aws:bedrock:us-east-1:123456789012:custom-model/same"

PROFILES = f"""\
[defaults]
family = "titan"
ttft_ms = 30
ms_per_token = 20
answer_tokens = 100
jitter = 0.3

[models."{BASE}"]

[models."{CANDIDATE}"]
like = "{BASE}"
"""

SUITE = """
from pathlib import Path

import pytest

@pytest.mark.bedrock_regression(budget=1000, max_slowdown=1.001, max_verbosity=1.001, max_ttft_slowdown=1.001)
def test_gate(bedrock_model):
    bedrock_model.converse("How do I reset my password?")
    Path("gate-started").touch()
"""


def one_run(directory: Path) -> float:
    (directory / "profiles.toml").write_text(PROFILES)
    (directory / "test_gate.py").write_text(SUITE)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BEDROCK_"))}
    environ.update(
        AWS_CONFIG_FILE=str(directory / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(directory / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    argv += ["--bedrock-emulator", "--bedrock-emulator-profiles", "profiles.toml"]
    argv += ["--bedrock-model", CANDIDATE, "--bedrock-baseline", BASE]
    argv += ["--bedrock-concurrency", "4", "--bedrock-report", "report.json"]
    argv += ["--junitxml", "junit.xml"]
    process = subprocess.Popen(
        argv,
        cwd=directory,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # A background job of a non-interactive shell inherits SIGINT ignored; undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    while not (directory / "gate-started").exists():
        if process.poll() is not None:
            raise SystemExit("pytest ended before the gate started")
        time.sleep(0.02)
    time.sleep(1.0)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    took = time.monotonic() - sent
    report = json.loads((directory / "report.json").read_text())
    assert report["interrupted"] is True and (directory / "junit.xml").exists()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as directory:
            times.append(one_run(Path(directory)))
    print(f"Ctrl-C to exit during a gate, {runs} runs (calls of ~2 s, 4 pairs in flight):")
    print(f"  median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    print("  each: " + ", ".join(f"{t:.2f}" for t in times))


if __name__ == "__main__":
    main()
