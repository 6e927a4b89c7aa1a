"""A process that only serves freezes its startup heap: full collections then walk what calls allocate, not every
module and model (a 158 ms pause under ``hanmadi load`` before)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from hanmadi.limits import uvicorn_config
from hanmadi.net import free_port
from hanmadi.server import DrainingServer, create_app
from loopback_support import loopback_settings


async def _serve_once(tmp_path: Path, *, freeze_heap: bool) -> int:
    """Start a server, read the collector's frozen count once it has started, shut it down."""
    port = free_port()
    settings = loopback_settings(tmp_path, port, twilio_auth_token="t" * 32)
    app = create_app(settings, use_recorder=False)
    config = uvicorn_config(app, settings, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = DrainingServer(config, app.state.hanmadi, freeze_heap=freeze_heap)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server stopped before it started"
            await asyncio.sleep(0.01)
        return gc.get_freeze_count()
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("freeze_heap", [True, False])
async def test_startup_heap_is_frozen_only_by_a_serving_process(tmp_path: Path, freeze_heap: bool) -> None:
    gc.unfreeze()
    try:
        frozen = await _serve_once(tmp_path, freeze_heap=freeze_heap)
    finally:
        gc.unfreeze()  # the test process goes on collecting as before
    assert (frozen > 0) is freeze_heap
