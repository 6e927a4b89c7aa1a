"""Shared fixtures for the vendor provider tests: the fake vendor servers and the failure metric."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from vendor_servers import Control, VendorServers

from hanmadi.metrics import REGISTRY


@pytest.fixture(scope="session")
def vendors() -> Iterator[VendorServers]:
    servers = VendorServers()
    servers.start()
    yield servers
    servers.stop()


@pytest.fixture
def control(vendors: VendorServers) -> Control:
    """The fakes' controls, reset for this test."""
    vendors.control.reset()
    return vendors.control


def provider_errors(provider: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("hanmadi_provider_errors_total", {"provider": provider, "reason": reason})
    return value or 0.0


@pytest.fixture
def errors_added() -> Callable[[str, str], float]:
    """How many ``PROVIDER_ERRORS{provider, reason}`` this test added so far."""
    names = ("auth", "rate_limited", "http_5xx", "http_4xx", "timeout", "connect", "bad_reply", "stalled")
    providers = ("openai", "elevenlabs", "google", "clova", "deepgram")
    before = {(p, r): provider_errors(p, r) for p in providers for r in names}

    def added(provider: str, reason: str) -> float:
        return provider_errors(provider, reason) - before.get((provider, reason), 0.0)

    return added
