"""hanmadi (한마디) — a Korean-first, real-time phone voice-agent server."""

__version__ = "0.1.0"
