"""Phone numbers are masked before they reach the database."""

from __future__ import annotations

import pytest

from hanmadi.store.records import mask_number


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+821012345678", "+8210****5678"),
        ("+82 10-1234-5678", "+8210****5678"),
        ("01012345678", "010****5678"),
        ("+14155551234", "+1415***1234"),
        ("+82215881234", "+8221***1234"),
        ("15881234", "158***34"),
        ("114", "114"),
        ("anonymous", "anonymous"),
        ("client:alice", "client:***"),
        ("not a number", "***"),
        ("", ""),
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked


def test_masked_numbers_keep_no_middle_digits() -> None:
    masked = mask_number("+821098765432")
    assert "9876" not in masked and masked.endswith("5432") and masked.startswith("+82")
