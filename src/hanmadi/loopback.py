"""Run a hanmadi server on loopback in a background thread (its own event loop): demo, benches and e2e tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from hanmadi.config import Settings
from hanmadi.server import DrainingServer, create_app


@contextmanager
def serve_in_thread(settings: Settings, *, port: int = 0, **app_kwargs: Any) -> Iterator[str]:
    """Start the server on 127.0.0.1 (``port`` 0 picks a free one); yield its base URL; stop it on exit."""
    application = create_app(settings, **app_kwargs)
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio", lifespan="on"
    )
    server = DrainingServer(config, application.state.hanmadi)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported to the starting thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="hanmadi-server", daemon=True)
    thread.start()
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"server failed to start: {failure[0] if failure else 'exited'}")
        thread.join(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=settings.drain_timeout_s + 10)
