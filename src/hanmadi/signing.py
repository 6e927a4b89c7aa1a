"""How hanmadi signs what it sends to the business: tool calls and call webhooks.

``X-Hanmadi-Signature: sha256=<hex HMAC-SHA256 of the raw request body, keyed with HANMADI_WEBHOOK_SECRET>``.
A receiver recomputes it over the bytes it received (before parsing the JSON) and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hanmadi-Signature"


def sign_body(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_body(secret: str, body: bytes, signature: str) -> bool:
    """True if ``signature`` is ``body``'s signature under ``secret`` (constant-time comparison)."""
    return hmac.compare_digest(sign_body(secret, body), signature.strip())
