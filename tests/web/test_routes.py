"""The web router: static pages and assets, auth on the softphone session route, off without an admin token."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from web_support import ADMIN_TOKEN, fake_app

from hanmadi.web import STATIC_DIR


@pytest.fixture
def client() -> TestClient:
    app, _, _ = fake_app()
    return TestClient(app, base_url="http://hanmadi.test")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/web/", "text/html; charset=utf-8"),
        ("/web/index.html", "text/html; charset=utf-8"),
        ("/web/call.html", "text/html; charset=utf-8"),
        ("/web/softphone.html", "text/html; charset=utf-8"),
        ("/web/css/hanmadi.css", "text/css; charset=utf-8"),
        ("/web/js/dashboard.js", "text/javascript; charset=utf-8"),
        ("/web/js/call.js", "text/javascript; charset=utf-8"),
        ("/web/js/waterfall.js", "text/javascript; charset=utf-8"),
        ("/web/js/softphone.js", "text/javascript; charset=utf-8"),
        ("/web/js/capture-worklet.js", "text/javascript; charset=utf-8"),
        ("/web/js/mulaw.js", "text/javascript; charset=utf-8"),
        ("/web/fonts/Pretendard-Regular.woff2", "font/woff2"),
        ("/web/fonts/OFL.txt", "text/plain; charset=utf-8"),
    ],
)
def test_pages_and_assets_are_served_with_their_types(client: TestClient, path: str, content_type: str) -> None:
    res = client.get(path)
    assert res.status_code == 200
    assert res.headers["content-type"] == content_type
    assert res.headers["x-content-type-options"] == "nosniff"


def test_pages_carry_a_csp_and_reference_only_local_assets(client: TestClient) -> None:
    for page in ("index.html", "call.html", "softphone.html"):
        res = client.get(f"/web/{page}")
        assert "script-src 'self'" in res.headers["content-security-policy"]
        assert 'lang="ko"' in res.text
        assert not re.search(r"(src|href)=\"(https?:)?//", res.text), f"{page} loads something from elsewhere"
        assert "<script>" not in res.text and "style=" not in res.text  # nothing inline: the CSP forbids it


def test_font_is_the_bundled_woff2_with_its_licence(client: TestClient) -> None:
    font = client.get("/web/fonts/Pretendard-Regular.woff2")
    assert font.content[:4] == b"wOF2"
    assert font.content == (STATIC_DIR / "fonts" / "Pretendard-Regular.woff2").read_bytes()
    assert len(font.content) < 2_000_000
    assert "SIL OPEN FONT LICENSE" in client.get("/web/fonts/OFL.txt").text
    assert "fonts/Pretendard-Regular.woff2" in client.get("/web/css/hanmadi.css").text


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    for path in ("/", "/web"):
        res = client.get(path, follow_redirects=False)
        assert res.status_code in (307, 308)
        assert res.headers["location"] == "/web/"


@pytest.mark.parametrize(
    "path", ["/web/../routes.py", "/web/%2e%2e/routes.py", "/web/nope.html", "/web/js/", "/web/fonts"]
)
def test_unknown_paths_and_traversal_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_everything_is_404_without_an_admin_token() -> None:
    app, issued, _ = fake_app(admin_token=None)
    client = TestClient(app)
    for path in ("/web/", "/web/index.html", "/web/softphone.html", "/web/fonts/Pretendard-Regular.woff2"):
        assert client.get(path).status_code == 404, path
    res = client.post("/web/softphone/session", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert res.status_code == 404
    assert client.get("/", follow_redirects=False).status_code == 404
    assert issued == {}


@pytest.mark.parametrize("header", [None, "Bearer wrong", "t", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x"])
def test_session_route_needs_the_admin_token(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    res = client.post("/web/softphone/session", headers=headers)
    assert res.status_code == 401
    assert res.headers["www-authenticate"] == "Bearer"


def test_session_issues_a_stream_token_for_a_fresh_call_sid() -> None:
    app, issued, _ = fake_app()
    client = TestClient(app, base_url="http://hanmadi.test:8080")
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    first = client.post("/web/softphone/session", headers=auth)
    second = client.post("/web/softphone/session", headers=auth)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"call_sid", "stream_url", "parameters"}
    assert re.fullmatch(r"WS[0-9a-f]{32}", body["call_sid"])
    assert body["stream_url"] == "ws://hanmadi.test:8080/twilio/media"
    assert body["parameters"]["softphone"] == "1"
    assert issued[body["parameters"]["token"]] == body["call_sid"]
    assert second.json()["call_sid"] != body["call_sid"]
    assert len(issued) == 2


def test_session_stream_url_is_wss_behind_https() -> None:
    app, _, _ = fake_app()
    client = TestClient(app, base_url="https://bot.example.com")
    res = client.post("/web/softphone/session", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert res.json()["stream_url"] == "wss://bot.example.com/twilio/media"
