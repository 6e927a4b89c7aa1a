"""Run a hanmadi server on loopback in a background thread (its own event loop): demo, benches and e2e tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hanmadi.config import Settings
from hanmadi.limits import uvicorn_config
from hanmadi.server import AppState, DrainingServer, create_app

# Servers started here, by base URL: their state and the event loop they run on (for :func:`settle`).
_running: dict[str, tuple[AppState, asyncio.AbstractEventLoop]] = {}


@contextmanager
def serve_in_thread(settings: Settings, *, port: int = 0, **app_kwargs: Any) -> Iterator[str]:
    """Start the server on 127.0.0.1 (``port`` 0 picks a free one); yield its base URL; stop it on exit."""
    application = create_app(settings, **app_kwargs)
    config = uvicorn_config(application, settings, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = DrainingServer(config, application.state.hanmadi)
    failure: list[BaseException] = []

    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the starting thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="hanmadi-server", daemon=True)
    thread.start()
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"server failed to start: {failure[0] if failure else 'exited'}")
        thread.join(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{bound}"
    _running[url] = (application.state.hanmadi, loops[0])
    try:
        yield url
    finally:
        _running.pop(url, None)
        server.should_exit = True
        thread.join(timeout=settings.drain_timeout_s + 10)


async def settle(url: str, timeout_s: float = 10.0) -> None:
    """Wait until the server at ``url`` (started by :func:`serve_in_thread`) has no call in progress and its
    recorder has written everything queued: what a test reads from the database afterwards is complete."""
    state, loop = _running[url]

    async def idle_and_flushed() -> None:
        if state.calls:
            await state.idle.wait()
        if state.recorder is not None:
            await state.recorder.flush()

    future = asyncio.run_coroutine_threadsafe(idle_and_flushed(), loop)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.wrap_future(future)
    finally:
        future.cancel()
