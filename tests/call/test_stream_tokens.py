"""One-time stream tokens are redeemed in the database: a captured token opens one stream across N processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from call_harness import call_settings

from hanmadi.server import AppState, create_app, redeem_stream_token
from hanmadi.store.writer import Recorder
from hanmadi.telephony import twilio as tw


async def test_a_token_redeemed_by_one_process_is_refused_by_another(tmp_path: Path) -> None:
    settings = call_settings(twilio_auth_token="shared-secret", database_url=f"sqlite+aiosqlite:///{tmp_path}/db")
    recorders = [Recorder(settings.database_url), Recorder(settings.database_url)]
    states: list[AppState] = []
    for recorder in recorders:
        await recorder.start()
        states.append(create_app(settings, recorder=recorder).state.hanmadi)
    try:
        token = states[0].tokens.issue("CA1")
        await redeem_stream_token(states[1], token, "CA1")  # the stream reached the other process: accepted
        for state in states:  # replayed on either process: refused
            with pytest.raises(tw.TokenError) as info:
                await redeem_stream_token(state, token, "CA1")
            assert info.value.reason == "reused"
        with pytest.raises(tw.TokenError) as info:
            await redeem_stream_token(states[0], states[0].tokens.issue("CA2"), "CA1")
        assert info.value.reason == "wrong_call"
    finally:
        for recorder in recorders:
            await recorder.stop()
