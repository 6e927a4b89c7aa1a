"""A real hanmadi server on loopback (uvicorn in a thread) with simulated providers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import e2e_settings, free_port

from hanmadi.config import Settings
from hanmadi.loopback import serve_in_thread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings = e2e_settings(tmp_path, port)
    with serve_in_thread(settings, port=port) as url:
        yield url, settings
