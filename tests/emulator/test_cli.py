"""The command line entry point and the AWS CLI against the emulator."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bedrock_latency.emulator import Emulator

from .conftest import MSGS

ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "PYTHONUNBUFFERED": "1",
}


def test_cli_bad_profile_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."m"]\nttft = 3\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_bedrock_latency.emulator", "--profiles", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert 'unknown field "ttft"' in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "99999"], "'99999' is not a port number"),
        (["--port", "-1"], "'-1' is not a port number"),
        (["--idle-timeout", "inf"], "'inf' is not a number of seconds"),
        (["--profiles", "NOT_UTF8"], "not UTF-8 text"),
        (["--profiles", "INFINITE"], 'field "ttft_ms" must be a finite number >= 0'),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "NOT_UTF8").write_bytes(b'[models."m"]\nfamily = "nova" # \xff\xfe\n')
    (tmp_path / "INFINITE").write_text('[models."m"]\nttft_ms = inf\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_bedrock_latency.emulator", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    # One line says what is wrong (argparse puts its usage lines before it).
    assert expected in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr


def test_cli_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[models."m"]\nfamily = "nova"\nttft_ms = 1\nms_per_token = 1\n'
        "answer_tokens = 3\nanswer_tokens_spread = 0\nprompt_spread = 0\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_bedrock_latency.emulator", "--profiles", str(good)],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("Bedrock emulator listening on http://127.0.0.1:")
        url = lines[0].split()[-1]
        assert lines[1].strip() == f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={url}"
        assert lines[2].strip() == f"export AWS_ENDPOINT_URL_BEDROCK={url}"
        from .conftest import make_client

        resp = make_client(url).converse(modelId="m", messages=MSGS)
        assert resp["usage"]["outputTokens"] == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.skipif(shutil.which("aws") is None, reason="AWS CLI not installed")
def test_aws_cli_converse(emulator: Emulator) -> None:
    model = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
    proc = subprocess.run(
        [
            "aws",
            "bedrock-runtime",
            "converse",
            "--endpoint-url",
            emulator.url,
            "--model-id",
            model,
            "--messages",
            json.dumps(MSGS),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["usage"]["outputTokens"] == 20 and out["stopReason"] == "end_turn"
    assert emulator.requests[-1].model_id == model
