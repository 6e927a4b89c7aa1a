"""Test-suite root: its presence puts ``tests/`` on ``sys.path`` so suites share ``loopback_support``."""

from collections.abc import Iterator

import pytest

from actions_support import ActionServers, action_servers


@pytest.fixture(scope="module")
def servers() -> Iterator[ActionServers]:
    """Loopback stand-ins for the customer's tools, a webhook receiver and Twilio's REST API (one set per module)."""
    with action_servers() as s:
        yield s
