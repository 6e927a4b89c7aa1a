"""Fixtures for the web tests (defined in ``web_support``, a uniquely named module other test folders cannot shadow)."""

from web_support import browser, page

__all__ = ["browser", "page"]
