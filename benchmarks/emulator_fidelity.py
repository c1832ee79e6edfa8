"""Timing fidelity of the embedded Bedrock Runtime emulator, as a boto3 client observes it.

Starts an Emulator with a 200 ms TTFT / 20 ms per token / 50-token profile, runs 1, 8 and 32
concurrent ConverseStream streams (one thread and one boto3 client each), and compares the
client-side TTFT (request sent, at botocore's before-send, to first contentBlockDelta) and ms/token ((last delta - first delta)/(tokens-1))
with what the profile emits. Then it searches the largest concurrency whose median ms/token
stays within 5 % of the profile.

Last, the scale row: 1,000 concurrent ConverseStream streams of the same profile. At that
load a boto3 client in the server's process would measure itself, so the streams come from
two client processes (asyncio, raw HTTP/1.1, one connection per stream, all sent at once);
the row says how many were refused or stalled, the median TTFT and ms/token the clients saw,
and the server process's memory; once with one token per delta, once with five. And the AWS
SDK for JavaScript v3 on its default HTTP/2 handler, when node and ``npm install --prefix
tests/js`` are there. Run: ``python3 benchmarks/emulator_fidelity.py`` (``--js`` for only the
JS row, ``--scale N [TOKENS_PER_DELTA]`` for only a scale row).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from pytest_bedrock_latency.emulator import Emulator

MODEL = "bench.model-v1"
TTFT_MS = 200.0
MS_PER_TOKEN = 20.0
TOKENS = 50
PROFILE = {
    MODEL: {
        "family": "nova",
        "ttft_ms": TTFT_MS,
        "ms_per_token": MS_PER_TOKEN,
        "answer_tokens": TOKENS,
        "prompt_spread": 0.0,
        "answer_tokens_spread": 0.0,
        "jitter": 0.0,
    }
}


def _client(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=4),
    )


def _one_stream(client: Any, prompt: str) -> tuple[float, float]:
    """(ttft_ms, ms_per_token) measured on the client for one ConverseStream."""
    sent: list[float] = []

    def on_send(**kwargs: Any) -> None:  # "request sent": after serialising and signing
        sent.append(time.perf_counter())

    client.meta.events.register("before-send.bedrock-runtime.ConverseStream", on_send)
    resp = client.converse_stream(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}]
    )
    client.meta.events.unregister("before-send.bedrock-runtime.ConverseStream", on_send)
    start = sent[-1]
    stamps: list[float] = []
    tokens = 0
    for event in resp["stream"]:
        if "contentBlockDelta" in event:
            stamps.append(time.perf_counter())
        elif "metadata" in event:
            tokens = event["metadata"]["usage"]["outputTokens"]
    ttft = (stamps[0] - start) * 1000.0
    return ttft, (stamps[-1] - stamps[0]) * 1000.0 / (tokens - 1)


def run(url: str, concurrency: int, rounds: int = 1) -> tuple[list[float], list[float]]:
    """Run ``concurrency`` simultaneous streams ``rounds`` times; return TTFTs and ms/token."""
    clients = [_client(url) for _ in range(concurrency)]
    for c in clients:  # warm up: connection pools and botocore's lazy loaders
        c.count_tokens(
            modelId=MODEL,
            input={"converse": {"messages": [{"role": "user", "content": [{"text": "warm up"}]}]}},
        )
    ttfts: list[float] = []
    tpots: list[float] = []
    lock = threading.Lock()

    def worker(i: int, r: int) -> None:
        ttft, tpot = _one_stream(clients[i], f"benchmark prompt {r} {i}")
        with lock:
            ttfts.append(ttft)
            tpots.append(tpot)

    for r in range(rounds):
        threads = [threading.Thread(target=worker, args=(i, r)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return ttfts, tpots


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


# -- the scale row ---------------------------------------------------------------------------


async def _raw_stream(host: str, port: int, i: int, go: asyncio.Event) -> dict[str, Any]:
    """One ConverseStream over a raw HTTP/1.1 connection: delta arrival times (perf_counter)."""
    body = json.dumps(
        {"messages": [{"role": "user", "content": [{"text": f"scale prompt {i}"}]}]}
    ).encode()
    head = (
        f"POST /model/{MODEL}/converse-stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return {"refused": str(exc)}
    await go.wait()
    start = time.perf_counter()
    writer.write(head.encode() + body)
    stamps: list[float] = []
    try:
        status = await asyncio.wait_for(reader.readline(), 60)
        if b" 200 " not in status:
            return {"refused": status.decode(errors="replace").strip()}
        while (await asyncio.wait_for(reader.readline(), 60)) not in (b"\r\n", b""):
            pass
        while True:  # one event frame per chunk
            size = int((await asyncio.wait_for(reader.readline(), 60)).strip() or b"0", 16)
            if size == 0:
                break
            frame = await reader.readexactly(size + 2)
            if b"contentBlockDelta" in frame[:100]:
                stamps.append(time.perf_counter())
    except (asyncio.TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
        return {"stalled": repr(exc), "deltas": len(stamps)}
    finally:
        writer.close()
    return {
        "ttft_ms": (stamps[0] - start) * 1000.0,
        # Every answer is TOKENS long (no spread): (last - first) / (tokens - 1), as LLMeter.
        "ms_per_token": (stamps[-1] - stamps[0]) * 1000.0 / (TOKENS - 1),
        "deltas": len(stamps),
    }


async def _scale_client(host: str, port: int, first: int, count: int, go_at: float) -> None:
    go = asyncio.Event()
    tasks = [asyncio.ensure_future(_raw_stream(host, port, first + i, go)) for i in range(count)]
    await asyncio.sleep(max(0.0, go_at - time.time()))  # every connection is open by now
    go.set()
    print(json.dumps(await asyncio.gather(*tasks)))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def scale(url_host: str, port: int, streams: int, processes: int = 2) -> dict[str, Any]:
    """``streams`` concurrent ConverseStreams from ``processes`` client processes."""
    go_at = time.time() + 2.0 + streams / 1000
    share = -(-streams // processes)
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--scale-client",
                url_host,
                str(port),
                str(p * share),
                str(min(share, streams - p * share)),
                str(go_at),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    results: list[dict[str, Any]] = []
    for client in clients:
        results += json.loads(client.communicate(timeout=600)[0])
    done = [r for r in results if "ms_per_token" in r]
    return {
        "streams": streams,
        "refused": sum("refused" in r for r in results),
        "stalled": sum("stalled" in r for r in results),
        "ttft": [r["ttft_ms"] for r in done],
        "tpot": [r["ms_per_token"] for r in done],
    }


def scale_row(streams: int, tokens_per_chunk: int = 1) -> None:
    profile = {MODEL: {**PROFILE[MODEL], "tokens_per_chunk": tokens_per_chunk}}
    with Emulator(profiles=profile) as emu:
        before = _rss_mb()
        out = scale(emu.host, emu.port, streams)
        after = _rss_mb()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        recorded = len(emu.requests)
    ttft, tpot = out["ttft"], out["tpot"]
    print(
        f"scale: {streams} concurrent ConverseStream streams, {tokens_per_chunk} token(s) per "
        f"delta (2 client processes): "
        f"{out['refused']} refused, {out['stalled']} stalled, {recorded} answered in full"
    )
    if tpot:
        med = statistics.median(tpot)
        print(
            f"  TTFT median {statistics.median(ttft):.1f} ms (p90 {p90(ttft):.1f}); "
            f"ms/token median {med:.2f} (p90 {p90(tpot):.2f}), "
            f"{100 * (med - MS_PER_TOKEN) / MS_PER_TOKEN:+.1f}% off the profile"
        )
    print(
        f"  server process memory: {before:.0f} MB before, {after:.0f} MB after, peak {peak:.0f} MB"
    )


# -- the JS SDK row ---------------------------------------------------------------------------

JS = Path(__file__).resolve().parent.parent / "tests" / "js"


def js_row(repeats: int = 10) -> None:
    """The AWS SDK for JavaScript v3 on its default handler (NodeHttp2Handler: HTTP/2, h2c)."""
    if shutil.which("node") is None or not (JS / "node_modules" / "@aws-sdk").is_dir():
        print("JS SDK: skipped (needs node and `npm install --prefix tests/js`)")
        return
    with Emulator(profiles=PROFILE) as emu:
        done = subprocess.run(
            ["node", str(JS / "bedrock_timing.mjs"), emu.url, MODEL, str(repeats)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=JS,
        )
    if done.returncode != 0:
        print(f"JS SDK: failed: {done.stderr.strip()[-300:]}")
        return
    result = json.loads(done.stdout.strip().splitlines()[-1])
    converse = [c["ms"] for c in result["converse"]]
    ttft = [s["ttft_ms"] for s in result["streams"]]
    tpot = [s["ms_per_token"] for s in result["streams"]]
    expected = TTFT_MS + (TOKENS - 1) * MS_PER_TOKEN
    print(
        f"JS SDK v3 ({result['handler']}, HTTP/2), {repeats} calls each: Converse median "
        f"{statistics.median(converse):.1f} ms (profile {expected:.0f}); ConverseStream TTFT "
        f"median {statistics.median(ttft):.1f} ms (best {min(ttft):.1f}), ms/token median "
        f"{statistics.median(tpot):.2f}"
    )


def main() -> int:
    # Client and server share one process here; a full GC pass would stall both.
    gc.collect()
    gc.disable()
    with Emulator(profiles=PROFILE) as emu:
        print(
            f"Emulator fidelity: profile ttft_ms={TTFT_MS:g}, ms_per_token={MS_PER_TOKEN:g}, "
            f"answer_tokens={TOKENS}, jitter=0 (ConverseStream, boto3, "
            f"{sys.platform}, Python {sys.version.split()[0]})"
        )
        header = (
            f"{'streams':>7} | {'n':>3} | {'TTFT emit':>9} | {'TTFT med':>8} | {'TTFT p90':>8} |"
            f" {'err ms':>6} | {'ms/tok emit':>11} | {'ms/tok med':>10} | {'ms/tok p90':>10} |"
            f" {'err med':>7}"
        )
        print(header)
        print("-" * len(header))
        for conc, rounds in ((1, 5), (8, 2), (32, 1)):
            ttfts, tpots = run(emu.url, conc, rounds)
            t_med, m_med = statistics.median(ttfts), statistics.median(tpots)
            print(
                f"{conc:>7} | {len(ttfts):>3} | {TTFT_MS:>9.1f} | {t_med:>8.1f} | {p90(ttfts):>8.1f} |"
                f" {t_med - TTFT_MS:>+6.1f} | {MS_PER_TOKEN:>11.2f} |"
                f" {m_med:>10.2f} | {p90(tpots):>10.2f} |"
                f" {100 * (m_med - MS_PER_TOKEN) / MS_PER_TOKEN:>6.1f}%"
            )
        best = 0
        tried = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        for conc in tried:
            ttfts, tpots = run(emu.url, conc)
            err = abs(statistics.median(tpots) - MS_PER_TOKEN) / MS_PER_TOKEN
            print(
                f"  search: {conc:>3} streams -> median ms/token {statistics.median(tpots):.2f} "
                f"({100 * err:.1f}% off), median TTFT {statistics.median(ttfts):.1f} ms"
            )
            if err > 0.05:
                break
            best = conc
        at_least = " (the largest tried)" if best == tried[-1] else ""
        print(f"Largest concurrency holding median ms/token within 5%: {best}{at_least}")
    js_row()
    scale_row(1000)
    scale_row(1000, tokens_per_chunk=5)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--scale-client"]:
        host, port, first, count, go_at = sys.argv[2:7]
        asyncio.run(_scale_client(host, int(port), int(first), int(count), float(go_at)))
    elif sys.argv[1:2] == ["--js"]:
        js_row()
    elif sys.argv[1:2] == ["--scale"]:
        gc.disable()
        scale_row(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    else:
        sys.exit(main())
