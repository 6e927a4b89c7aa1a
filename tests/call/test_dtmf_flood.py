"""A flood of keypad digits (from outside) is bounded, counted, and logged once — not one INFO line per digit."""

from __future__ import annotations

import logging

import pytest
from call_harness import AnswersLLM, CallHarness

from hanmadi.call import MAX_PENDING_DTMF
from hanmadi.metrics import REGISTRY
from hanmadi.providers.simulated import SimulatedSTT
from hanmadi.telephony import twilio as tw


async def test_twenty_thousand_digits_keep_sixty_four_and_log_one_line(caplog: pytest.LogCaptureFixture) -> None:
    dropped_before = REGISTRY.get_sample_value("hanmadi_dtmf_dropped_total") or 0.0
    caplog.set_level(logging.INFO, logger="hanmadi")
    async with CallHarness(stt=SimulatedSTT(["네"]), llm=AnswersLLM("네.")) as h:
        for i in range(20_000):
            h.call.on_event(tw.Dtmf("MZtest", str(i % 10)))
        kept = list(h.call.dtmf_log)
    assert len(kept) == MAX_PENDING_DTMF
    dropped = (REGISTRY.get_sample_value("hanmadi_dtmf_dropped_total") or 0.0) - dropped_before
    assert dropped == 20_000 - MAX_PENDING_DTMF
    dtmf_lines = [r for r in caplog.records if "keypad" in r.getMessage() or "DTMF" in r.getMessage()]
    assert len(dtmf_lines) == 1 and dtmf_lines[0].levelno == logging.INFO
