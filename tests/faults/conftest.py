"""The fault tests reuse the fake vendor servers of ``tests/providers`` (Deepgram that drops its connection)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "providers"))
