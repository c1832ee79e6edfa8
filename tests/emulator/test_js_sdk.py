"""The AWS SDK for JavaScript v3 on its default handler (NodeHttp2Handler: h2c) against the emulator.

Needs node and ``npm install`` in tests/js (``.ci/run`` does it); skipped with the reason
otherwise. The timing margins are wide enough for a machine whose cores are all busy (for
latencies the best of six runs is compared: noise only ever adds time); the fidelity figures
come from ``benchmarks/emulator_fidelity.py --js``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from pytest_bedrock_latency.emulator import Emulator

JS = Path(__file__).resolve().parent.parent / "js"
SDK = JS / "node_modules" / "@aws-sdk" / "client-bedrock-runtime"
PROFILE = {
    "defaults": {"jitter": 0.0, "prompt_spread": 0.0, "answer_tokens_spread": 0.0},
    "models": {
        "js.model": {"family": "nova", "ttft_ms": 200, "ms_per_token": 20, "answer_tokens": 10}
    },
}

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not SDK.is_dir(),
        reason="@aws-sdk/client-bedrock-runtime missing: run npm install in tests/js",
    ),
]


@pytest.mark.long_running
def test_default_js_client_streams_with_the_profiles_figures() -> None:
    with Emulator(profiles=PROFILE) as emu:
        done = subprocess.run(
            ["node", str(JS / "bedrock_timing.mjs"), emu.url, "js.model", "6"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=JS,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert emu.errors == []
        records = emu.requests
    assert result["handler"] == "NodeHttp2Handler"  # the default, not configured by the test
    assert {r.operation for r in records} == {"Converse", "ConverseStream"}
    assert all(r.status == 200 and r.error_code is None for r in records)
    for call in result["converse"]:
        assert call["outputTokens"] == 10 and call["stopReason"] == "end_turn"
    for stream in result["streams"]:
        assert stream["deltas"] == 10 and stream["outputTokens"] == 10
        assert stream["stopReason"] == "end_turn"
    # Never early, and on time within margins a machine whose every core is busy still keeps
    # (a starved node process adds its own delay); the fidelity figures are
    # benchmarks/emulator_fidelity.py's (README, "Fidelity").
    converse = min(c["ms"] for c in result["converse"])  # 200 + 9 x 20 = 380 ms
    ttft = min(s["ttft_ms"] for s in result["streams"])
    assert 380 * 0.97 <= converse < 380 * 2
    assert 200 * 0.97 <= ttft < 200 * 2
    assert statistics.median(s["ms_per_token"] for s in result["streams"]) == pytest.approx(
        20, rel=0.25
    )
