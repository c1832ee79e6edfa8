"""``bedrock-emulator`` / ``python -m pytest_bedrock_latency.emulator``: run the emulator."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ..measurement import CallRecord
from .profiles import ProfileError
from .server import Emulator


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number (0-65535; 0: any free port)"
        )
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator, print its URL and the export lines, serve until Ctrl-C (exit 0)."""
    parser = argparse.ArgumentParser(
        prog="bedrock-emulator",
        description="Local, wire-compatible Amazon Bedrock Runtime emulator (plus moto's "
        "bedrock control plane on the same port).",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; use another only on purpose)",
    )
    parser.add_argument("--port", type=_port, default=0, help="port (default 0: any free port)")
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="close a connection idle, or stopped half-way through a request, this long "
        "(default 5)",
    )
    parser.add_argument(
        "--profiles",
        metavar="FILE",
        default=None,
        help="TOML profile file (default: the shipped default profiles)",
    )
    parser.add_argument(
        "--upstream",
        metavar="UPSTREAM",
        default=None,
        help="be the measuring proxy instead: forward every request to Amazon Bedrock ('aws', "
        "re-signed with the local AWS credentials) or to a URL, and print each call's timing",
    )
    args = parser.parse_args(argv)
    if args.upstream is not None:
        return _proxy(args.upstream, args.host, args.port, args.idle_timeout)
    try:
        emulator = Emulator(
            profiles=args.profiles, host=args.host, port=args.port, idle_timeout=args.idle_timeout
        )
    except ProfileError as exc:
        print(f"bedrock-emulator: {exc}", file=sys.stderr)
        return 2
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"bedrock-emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"Bedrock emulator listening on {emulator.url}")
    print(f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={emulator.url}")
    print(f"export AWS_ENDPOINT_URL_BEDROCK={emulator.url}")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


def _call_line(record: CallRecord) -> str:
    """One line per measured call: what and how fast (never the prompt or the answer)."""
    if record.state == "error":
        return f"{record.operation} {record.model_id}: {record.error_code}"
    g = record.generation()
    parts = [f"{g.operation} {g.model_id}:"]
    if g.ttft_ms is not None:
        parts.append(f"TTFT {g.ttft_ms:.1f} ms")
    if g.ms_per_token is not None:
        parts.append(f"{g.ms_per_token:.2f} ms/token")
    parts.append(f"total {g.total_ms:.1f} ms, {g.input_tokens} in / {g.output_tokens} out tokens")
    return " ".join(parts)


def _proxy(upstream: str, host: str, port: int, idle_timeout: float) -> int:
    from .proxy import Proxy, ProxyError

    if host not in ("127.0.0.1", "localhost"):
        print("bedrock-emulator: --upstream binds 127.0.0.1 only (--host)", file=sys.stderr)
        return 2
    try:
        proxy = Proxy(
            upstream,
            port=port,
            idle_timeout=idle_timeout,
            on_done=lambda record: print(_call_line(record), flush=True),
        )
        proxy.check_upstream()
        proxy.start()
    except ProxyError as exc:
        print(f"bedrock-emulator: --upstream: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"Bedrock measuring proxy to {upstream} listening on {proxy.url}")
    print(f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={proxy.url}")
    print(f"export AWS_ENDPOINT_URL_BEDROCK={proxy.url}")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
