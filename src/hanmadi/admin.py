"""The admin token at the edges: one bearer check for the API, the pages and the schema; the schema's routes.

``Authorization: Bearer <token>`` — the scheme is case-insensitive (RFC 9110), the token compared in constant time.
The OpenAPI schema and Swagger UI are not public: with ``--dev`` (loopback only) both are served; otherwise
``/openapi.json`` needs the admin token (and does not exist without one) and ``/docs`` is off.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse


def bearer_matches(authorization: str | None, expected: str) -> bool:
    """True when ``authorization`` is ``Bearer <expected>`` (any case of "bearer"); never True for an empty token."""
    if not authorization or not expected:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def unauthorized() -> HTTPException:
    """401 with the challenge a client expects."""
    return HTTPException(401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"})


def add_schema_routes(app: FastAPI, *, admin_token: str | None, dev: bool) -> None:
    """``/openapi.json`` (admin token, or open in dev) and ``/docs`` (dev only) on an app built without them."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
        if not dev:
            if not admin_token:
                raise HTTPException(404, "Not Found")
            if not bearer_matches(authorization, admin_token):
                raise unauthorized()
        schema: dict[str, Any] = app.openapi()
        return JSONResponse(schema)

    if dev:

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="hanmadi API")
