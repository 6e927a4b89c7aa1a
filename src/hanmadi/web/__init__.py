"""Web pages served by the app: the calls dashboard, the call page with per-turn waterfalls, the softphone."""

from hanmadi.web.routes import STATIC_DIR, web_router

__all__ = ["STATIC_DIR", "web_router"]
