"""``hanmadi bench abuse``: what unauthenticated sockets cost a server on loopback (prints JSON; not a test).

- ``frames``: N sockets each send one large WebSocket frame without a ``start`` or a token. Reported: the server's
  RSS before, at its peak while they send (sampled from ``/proc``), and after; how many sockets the server closed.
- ``idle``: M sockets connect and send nothing. Reported: how long each stayed open before the server closed it,
  against ``start_timeout_s`` (+ 2 s, the issue's bound).

The server runs in its own process (simulated providers, no recorder) so its RSS is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from hanmadi.net import free_port

_SAMPLE_S = 0.05


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def serve(port: int, start_timeout_s: float) -> None:
    """The server process: the real app and limits, simulated providers, no records."""
    import logging

    from hanmadi.config import Settings
    from hanmadi.limits import uvicorn_config
    from hanmadi.server import DrainingServer, create_app

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        twilio_auth_token="abuse-bench-auth-token-0123456789",
        stt="simulated",
        llm="simulated",
        tts="simulated",
        start_timeout_s=start_timeout_s,
        max_pending_sockets_per_ip=1000,  # measure the frame and start limits, not the per-address cap
        drain_timeout_s=1.0,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings, use_recorder=False)
    config = uvicorn_config(app, settings, host="127.0.0.1", port=port, log_level="warning", backlog=4096)
    DrainingServer(config, app.state.hanmadi).run()


async def _one_frame(url: str, frame: bytes) -> bool:
    """Send one frame; True when the server closed the socket."""
    try:
        async with connect(url, max_size=None, open_timeout=30, close_timeout=5) as ws:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.send(frame)
            try:
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False
    except (ConnectionClosed, OSError, InvalidHandshake):
        return True
    return False


async def _idle(url: str) -> float | None:
    """Connect and say nothing; seconds until the server closed the socket (None: still open after 60 s)."""
    async with connect(url, open_timeout=30) as ws:
        opened = time.monotonic()
        try:
            async with asyncio.timeout(60):
                while True:
                    await ws.recv()
        except ConnectionClosed:
            return time.monotonic() - opened
        except TimeoutError:
            return None


async def _sample(pid: int, stop: asyncio.Event, peak: list[float]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _rss_mb(pid))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_SAMPLE_S):
                await stop.wait()


async def run_abuse(sockets: int = 40, frame_mb: float = 16.0, idle: int = 50, start_timeout_s: float = 5.0) -> Any:
    """Start a server process, run both measurements against it, stop it; the figures as a dict."""
    port = free_port()
    command = [sys.executable, "-m", "hanmadi.bench.abuse", "--serve-port", str(port)]
    proc = await asyncio.create_subprocess_exec(*command, "--start-timeout", str(start_timeout_s))
    assert proc.pid is not None
    base = f"http://127.0.0.1:{port}"
    ws_url = f"ws://127.0.0.1:{port}/twilio/media"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # let the fresh process settle before the baseline
        before = _rss_mb(proc.pid)
        frame = b"x" * int(frame_mb * 1024 * 1024)
        stop, peak = asyncio.Event(), [before]
        sampler = asyncio.create_task(_sample(proc.pid, stop, peak))
        closed = await asyncio.gather(*(_one_frame(ws_url, frame) for _ in range(sockets)))
        stop.set()
        await sampler
        after = _rss_mb(proc.pid)
        waits = await asyncio.gather(*(_idle(ws_url) for _ in range(idle)))
        open_after = [w for w in waits if w is None]
        closed_waits = sorted(w for w in waits if w is not None)
        async with httpx.AsyncClient() as client:
            healthy = (await client.get(f"{base}/healthz")).status_code == 200
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await proc.wait()
    bound = start_timeout_s + 2.0
    return {
        "frames": {
            "sockets": sockets,
            "frame_mb": frame_mb,
            "server_rss_mb_before": round(before, 1),
            "server_rss_mb_peak": round(peak[0], 1),
            "server_rss_mb_after": round(after, 1),
            "rss_increase_mb": round(peak[0] - before, 1),
            "sockets_closed_by_server": sum(closed),
        },
        "idle": {
            "sockets": idle,
            "start_timeout_s": start_timeout_s,
            "closed": len(closed_waits),
            "still_open": len(open_after),
            "closed_after_s_min": round(closed_waits[0], 3) if closed_waits else None,
            "closed_after_s_max": round(closed_waits[-1], 3) if closed_waits else None,
            "all_within_start_timeout_plus_2s": not open_after and bool(closed_waits) and closed_waits[-1] <= bound,
        },
        "server_healthy_after": healthy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="the abuse bench's server process")
    parser.add_argument("--serve-port", type=int, required=True)
    parser.add_argument("--start-timeout", type=float, default=5.0)
    args = parser.parse_args()
    serve(args.serve_port, args.start_timeout)


if __name__ == "__main__":
    main()
