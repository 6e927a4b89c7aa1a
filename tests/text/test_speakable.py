"""speakable(): the Korean corpus (speakable_ko.tsv), English, the number readers, and properties."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hanmadi.text import Lexicon, speakable, speaker
from hanmadi.text.speakable import native_korean, sino_korean

CORPUS = Path(__file__).with_name("speakable_ko.tsv")


def _corpus() -> list[tuple[str, str, str]]:
    rows = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            rule, written, spoken = line.split("\t")
            rows.append((rule, written, spoken))
    return rows


CASES = _corpus()


@pytest.mark.parametrize(("rule", "written", "spoken"), CASES, ids=[f"{r}:{w}" for r, w, _ in CASES])
def test_korean_corpus(rule: str, written: str, spoken: str) -> None:
    assert speakable(written) == spoken


def test_corpus_covers_every_rule_of_the_issue() -> None:
    per_rule = Counter(rule for rule, _, _ in CASES)
    assert len(CASES) >= 150
    for rule in (
        "native sino-counter hundred month grouping time date money decimal percent range phone identifier unit "
        "acronym code symbol kept"
    ).split():
        assert per_rule[rule] >= 3, rule


def test_the_issue_example() -> None:
    written = "내일 오후 3시 30분에 4명, 총 12,500원입니다. 문의는 010-1234-5678로 주세요."
    assert speakable(written) == (
        "내일 오후 세 시 삼십 분에 네 명, 총 만 이천오백 원입니다. 문의는 공일공 일이삼사 오육칠팔로 주세요."
    )


@pytest.mark.parametrize(
    ("n", "reading"),
    [
        (0, "영"),
        (1, "일"),
        (10, "십"),
        (11, "십일"),
        (100, "백"),
        (1000, "천"),
        (1001, "천일"),
        (10000, "만"),
        (12500, "만 이천오백"),
        (100000, "십만"),
        (110000, "십일만"),
        (100000000, "일억"),
        (100010000, "일억 만"),
        (1234567890123, "일조 이천삼백사십오억 육천칠백팔십구만 백이십삼"),
        (10**16, "일경"),
        (10**20, "일" + "영" * 20),  # beyond 경: digit by digit
    ],
)
def test_sino_korean(n: int, reading: str) -> None:
    assert sino_korean(n) == reading


@pytest.mark.parametrize(
    ("n", "attributive", "reading"),
    [
        (1, True, "한"),
        (1, False, "하나"),
        (2, True, "두"),
        (3, True, "세"),
        (4, True, "네"),
        (20, True, "스무"),
        (20, False, "스물"),
        (21, True, "스물한"),
        (34, True, "서른네"),
        (99, False, "아흔아홉"),
    ],
)
def test_native_korean(n: int, attributive: bool, reading: str) -> None:
    assert native_korean(n, attributive) == reading


@pytest.mark.parametrize("n", [0, 100, -1])
def test_native_korean_is_only_1_to_99(n: int) -> None:
    with pytest.raises(ValueError):
        native_korean(n)


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("Your table for 4 is booked.", "Your table for four is booked."),
        ("It costs $20.", "It costs twenty dollars."),
        ("It costs $1.", "It costs one dollar."),
        ("The total is $125.50.", "The total is one hundred and twenty-five dollars and fifty cents."),
        ("Only $0.99!", "Only ninety-nine cents!"),
        ("Tickets from £12", "Tickets from twelve pounds"),
        ("See you at 7:30 pm.", "See you at seven thirty p.m."),
        ("See you at 10:05.", "See you at ten oh five."),
        ("Come at 3:00.", "Come at three o'clock."),
        ("We open at 9 am.", "We open at nine a.m."),
        ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
        ("Call +1 415 555 0100.", "Call plus one, four one five, five five five, zero one zero zero."),
        ("It is the 1st and the 22nd.", "It is the first and the twenty-second."),
        ("Delivery takes 3-5 days.", "Delivery takes three to five days."),
        ("That is 50% off.", "That is fifty percent off."),
        ("It weighs 1 kg or 3.5 km.", "It weighs one kilogram or three point five kilometers."),
        ("Since 2024.", "Since twenty twenty-four."),
        ("On 2024-03-15.", "On March fifteenth, twenty twenty-four."),
        ("We have 12,500 items.", "We have twelve thousand five hundred items."),
        ("It is -5 outside.", "It is minus five outside."),
        ("Call 1-800-555-1234.", "Call one, eight zero zero, five five five, one two three four."),
        ("Open 24/7, closed on 12/25.", "Open twenty-four seven, closed on December twenty-fifth."),
        ("Press #2 for 3x speed.", "Press number two for three x speed."),
        ("A $1.5M deal", "A one million five hundred thousand dollars deal"),
        ("Go to example.com/2 now.", "Go to example.com/2 now."),
        ("No numbers here.", "No numbers here."),
    ],
)
def test_english(written: str, spoken: str) -> None:
    assert speakable(written, lang="en") == spoken
    assert speakable(written, lang="en-US") == spoken


def test_other_languages_get_the_lexicon_only() -> None:
    lexicon = Lexicon.from_mapping({"Hanmadi": "ハンマディ"})
    assert speakable("Hanmadi 3時", lang="ja", lexicon=lexicon) == "ハンマディ 3時"


def test_lexicon_comes_before_the_rules() -> None:
    lexicon = Lexicon.from_mapping({"GS25": "지에스 이십오", "한마디": "한마디 상담원", "3M": "쓰리엠"})
    assert speakable("GS25에서 3M 테이프 2개", lexicon=lexicon) == "지에스 이십오에서 쓰리엠 테이프 두 개"
    # the rules read what the lexicon wrote
    assert speakable("한마디 1번", lexicon=Lexicon.from_mapping({"한마디": "한마디 2호"})) == "한마디 이 호 한 번"


def test_speaker_binds_language_and_lexicon() -> None:
    to_speech = speaker("ko", Lexicon.from_mapping({"Gemma": "젬마"}))
    assert to_speech("Gemma 3명") == "젬마 세 명"
    assert speaker("en")("3 cats") == "three cats"


def test_digits_of_other_scripts_are_read() -> None:
    assert speakable("３명") == "세 명"
    assert speakable("٣명, １２,５００원") == "세 명, 만 이천오백 원"
    assert speakable("٣ cats", lang="en") == "three cats"


# Properties -------------------------------------------------------------------------------------------------------

_HANGUL_WORDS = st.text(st.integers(0xAC00, 0xD7A3).map(chr), min_size=1, max_size=4)
_COUNTERS = (
    "시 시간 명 개 살 마리 잔 병 권 대 벌 켤레 그릇 번째 번 달 분 초 원 년 월 일 층 호 호선 인분 점 도 세 %".split()
)
_UNITS = "km kg g L ml cm °C ℃ m² GB % %p".split()
_NUMBERS = st.one_of(
    st.integers(0, 10**22).map(str),
    st.integers(0, 10**12).map(lambda n: f"{n:,}"),
    st.tuples(st.integers(0, 9999), st.integers(0, 999)).map(lambda p: f"{p[0]}.{p[1]}"),
    st.integers(0, 99).map(lambda n: f"-{n}"),
    st.tuples(st.integers(0, 30), st.integers(0, 99)).map(lambda p: f"{p[0]}:{p[1]:02d}"),
    st.tuples(st.integers(1900, 2100), st.integers(0, 13), st.integers(0, 32)).map(
        lambda p: f"{p[0]}-{p[1]:02d}-{p[2]:02d}"
    ),
    st.tuples(st.integers(0, 13), st.integers(0, 40)).map(lambda p: f"{p[0]}/{p[1]}"),
    st.tuples(st.integers(0, 99), st.integers(0, 9999), st.integers(0, 9999)).map(lambda p: f"0{p[0]}-{p[1]}-{p[2]}"),
    st.from_regex(r"\+\d{1,3} \d{1,4} \d{3,4} \d{4}", fullmatch=True),
    st.from_regex(r"[A-Z]{1,3}\d{1,4}|\d{1,3}[A-Z]{1,2}", fullmatch=True),
    st.from_regex(r"[₩$€£¥]\d{1,7}(\.\d{1,3})?", fullmatch=True),
    st.from_regex(r"\d{1,4}(\.\d)?[만천억조백]( \d{1,4}[천만])?", fullmatch=True),
    st.text("0123456789,.:-/~+#%·() ", min_size=1, max_size=14),
    st.text("０１２３４５６７８９٠١٢٣٤٥٦٧٨٩", min_size=1, max_size=3),  # other scripts' digits read alike
)
_FRAGMENTS = st.one_of(
    _HANGUL_WORDS,
    _NUMBERS,
    st.builds(str.__add__, _NUMBERS, st.sampled_from(_COUNTERS + _UNITS)),
    st.builds(lambda a, b: f"{a}~{b}", _NUMBERS, _NUMBERS),
    st.from_regex(r"[A-Z]{1,6}(&[A-Z]{1,3})?", fullmatch=True),
    st.sampled_from([*list(" ,.!?'\"()&+#/~·%°-"), "  ", "km/h", "iPhone", "Wi-Fi", "(금)", "번호"]),
)
_KOREAN_TEXTS = st.lists(_FRAGMENTS, max_size=12).map(" ".join) | st.lists(_FRAGMENTS, max_size=12).map("".join)
_DIGIT = re.compile(r"\d")  # any script's decimal digit, ASCII or not


@settings(max_examples=1000, deadline=None)
@given(_KOREAN_TEXTS)
def test_no_digit_reaches_the_tts_in_korean(text: str) -> None:
    assert not _DIGIT.search(speakable(text)), speakable(text)


@settings(max_examples=1000, deadline=None)
@given(_KOREAN_TEXTS)
def test_normalising_twice_changes_nothing(text: str) -> None:
    once = speakable(text)
    assert speakable(once) == once


def _hangul(text: str) -> str:
    return "".join(ch for ch in text if "가" <= ch <= "힣")


# The written units of a number (3만, 1억 2천만) are regrouped in the reading (10000만 → 일억): part of the number.
_NUMERAL_UNITS = re.compile(r"(?<=[\d.,])\s?[천백조억만]+")


@settings(max_examples=500, deadline=None)
@given(_KOREAN_TEXTS)
@example("£0원")  # found by hypothesis: the money rule took a pound amount's written 원 as its own
@example("$5 원")
def test_no_written_hangul_is_dropped(text: str) -> None:
    out = iter(_hangul(speakable(text)))
    written = _hangul(_NUMERAL_UNITS.sub(" ", text))
    assert all(ch in out for ch in written)  # the written syllables, in order, within the spoken ones


_ENGLISH_TEXTS = st.lists(
    st.one_of(
        st.sampled_from("the total is at call we open for days items".split()),
        _NUMBERS,
        st.sampled_from(list(" ,.!?$%-:")),
    ),
    max_size=10,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(_ENGLISH_TEXTS)
def test_english_is_stable_too(text: str) -> None:
    once = speakable(text, lang="en")
    assert speakable(once, lang="en") == once


@pytest.mark.parametrize(
    "text",
    [
        "https://hanmadi.kr/a/123?b=4 참고하세요",
        "www.hanmadi.co.kr/2024 에서",
        "help24@hanmadi.kr로 보내 주세요",
        "config_v2 값",
        "hanmadi2024.com 접속",
    ],
)
def test_urls_emails_and_code_keep_their_digits(text: str) -> None:
    protected = text.split(" ")[0].removesuffix("로")
    assert protected in speakable(text)


@pytest.mark.parametrize("digits", ["9" * 5000, ",".join(["999"] * 1500), "1" + "0" * 25])
@pytest.mark.parametrize("lang", ["ko", "en"])
def test_a_number_too_long_to_be_a_quantity_is_read_digit_by_digit(digits: str, lang: str) -> None:
    for text in (digits, f"{digits}원", f"${digits}", f"#{digits}"):
        spoken = speakable(text, lang)
        assert not _DIGIT.search(spoken)
        first_digits = {("ko", "9"): "구구구", ("ko", "1"): "일영영", ("en", "9"): "nine nine", ("en", "1"): "one zero"}
        assert first_digits[(lang, digits[0])] in spoken
