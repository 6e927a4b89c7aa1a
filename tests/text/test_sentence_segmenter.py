"""SentenceSegmenter: named rule cases (Korean, English, mixed, CJK), LLM-like token streams, properties."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanmadi.text import SentenceSegmenter
from hanmadi.text.segmenter import _is_emoji


def segment(text: str, **kwargs: object) -> list[str]:
    seg = SentenceSegmenter(**kwargs)  # type: ignore[arg-type]
    return seg.push(text) + seg.flush()


def stream(tokens: list[str], **kwargs: object) -> list[list[str]]:
    """Push token by token; the last entry is what flush() returned."""
    seg = SentenceSegmenter(**kwargs)  # type: ignore[arg-type]
    return [seg.push(t) for t in tokens] + [seg.flush()]


# Korean phone answers -----------------------------------------------------------------------------------------


def test_korean_reservation_answer() -> None:
    # the opening acknowledgement is spoken at once (first-clause split, on by default)
    assert segment("네, 예약 도와드리겠습니다. 몇 시로 해 드릴까요?") == [
        "네,",
        "예약 도와드리겠습니다.",
        "몇 시로 해 드릴까요?",
    ]
    assert SentenceSegmenter(first_clause_split=False).push("네, 예약 도와드리겠습니다. 몇 시로") == [
        "네, 예약 도와드리겠습니다."
    ]


def test_first_clause_split_at_korean_connective() -> None:
    assert segment("오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?") == [
        "오늘 날씨가 정말 좋은데",
        "산책하러 나가시는 건 어떠세요?",
    ]


def test_korean_ending_without_period_splits_before_next_word() -> None:
    assert segment("가격은 3.5만원이고요 주차는 무료예요") == ["가격은 3.5만원이고요", "주차는 무료예요"]


def test_numbered_list_lines_split_and_lose_their_numbers() -> None:
    assert segment("1. 본인 확인\n2. 예약 변경") == ["본인 확인", "예약 변경"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("확인했습니다 다음은요", ["확인했습니다", "다음은요"]),
        ("그렇죠 맞아요", ["그렇죠", "맞아요"]),
        ("가능합니까 네", ["가능합니까", "네"]),
        ("도착했다 그리고", ["도착했다", "그리고"]),
        ("좋네요\n감사합니다", ["좋네요", "감사합니다"]),
    ],
)
def test_korean_endings_without_punctuation(text: str, expected: list[str]) -> None:
    assert segment(text, first_clause_split=False) == expected


@pytest.mark.parametrize(
    "text",
    [
        "확인이 필요 없어요",  # 필요 is a noun
        "소요 시간은 30분이에요",
        "그러니까 제 말은요",  # connective 니까, not 습니까
        "학교에 다니다 보니 그래요",  # 다니다 is not ㅂ니다
        "요 앞에 있어요",  # a lone 요
        "정말 좋아요 .",  # punctuation, not a word, follows
    ],
)
def test_korean_non_endings_do_not_split(text: str) -> None:
    assert segment(text, first_clause_split=False) == [text]


def test_korean_ending_rule_is_off_for_english() -> None:
    assert segment("가격은 3.5만원이고요 주차는 무료예요", lang="en") == ["가격은 3.5만원이고요 주차는 무료예요"]


def test_korean_ending_followed_by_punctuation_keeps_the_punctuation() -> None:
    assert segment("정말 좋아요 ?! 네", first_clause_split=False) == ["정말 좋아요 ?!", "네"]


# Terminal punctuation and its closing run (one character of lookahead) ------------------------------------


def test_exclamation_emits_on_the_next_character() -> None:
    seg = SentenceSegmenter()
    assert seg.push("안녕하세요!") == []
    assert seg.push(" ") == ["안녕하세요!"]
    assert seg.flush() == []
    assert seg.push("안녕하세요!") == []
    assert seg.flush() == ["안녕하세요!"]


def test_question_mark_emits_on_the_next_character() -> None:
    assert SentenceSegmenter().push("몇 시로 해 드릴까요? 네") == ["몇 시로 해 드릴까요?"]


def test_korean_period_emits_on_the_next_character_even_without_a_space() -> None:
    seg = SentenceSegmenter()
    assert seg.push("감사합니다.") == []
    assert seg.push("좋아요.") == ["감사합니다."]
    assert seg.push("그렇죠.") == ["좋아요."]
    assert seg.flush() == ["그렇죠."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("잠시만요... 확인해 볼게요.", ["잠시만요...", "확인해 볼게요."]),
        ("정말요?! 대박이네요", ["정말요?!", "대박이네요"]),
        ("잠시만요...", ["잠시만요..."]),
        ("정말요?!", ["정말요?!"]),
        ("네?? 뭐라고요?", ["네??", "뭐라고요?"]),
        ("와... 정말요?!", ["와...", "정말요?!"]),
    ],
)
def test_closing_run_is_kept_as_written(text: str, expected: list[str]) -> None:
    assert segment(text) == expected
    seg = SentenceSegmenter()
    assert [s for ch in text for s in seg.push(ch)] == expected[:-1]  # the last one waits for the end
    assert seg.flush() == expected[-1:]


def test_closing_run_stays_together_across_tokens() -> None:
    assert stream(["잠시만요", ".", "..", " 확인", "해 볼게요."]) == [
        [],
        [],
        [],
        ["잠시만요..."],
        [],
        ["확인해 볼게요."],
    ]
    assert stream(["정말요?", "!", " 네"]) == [[], [], ["정말요?!"], ["네"]]


@pytest.mark.parametrize(
    "text",
    [
        "고객님께서 '예약을 변경하고 싶어요.'라고 말씀하셨네요.",
        "고객님께서 ‘예약을 변경하고 싶어요.’라고 말씀하셨네요.",
        "담당자가 '곧 연락드릴게요!'하고 전화를 끊었어요.",
        '손님이 "정말요?!"라고 물으셨어요.',
    ],
)
def test_sentence_end_inside_quotes_before_a_quotative_does_not_split(text: str) -> None:
    assert segment(text) == [text]
    assert segment(text + " 맞으시죠?") == [text, "맞으시죠?"]


def test_closing_quote_then_space_ends_the_sentence() -> None:
    assert segment("'변경하고 싶어요.' 다음 문의는요?") == ["'변경하고 싶어요.'", "다음 문의는요?"]


def test_cjk_punctuation() -> None:
    seg = SentenceSegmenter(lang="ja")
    assert seg.push("今日は晴れです。") == []
    assert seg.push("本当？すごい！") == ["今日は晴れです。", "本当？"]
    assert seg.flush() == ["すごい！"]


def test_terminal_run_split_over_tokens_is_attached() -> None:
    assert stream(["와!", "!", " 정말?", "!"]) == [[], [], ["와!!"], [], ["정말?!"]]
    assert segment("와!! 정말?!") == ["와!!", "정말?!"]


def test_closing_mark_after_a_certain_end_is_attached() -> None:
    assert segment("좋아요!) 다음") == ["좋아요!)", "다음"]


def test_stray_punctuation_at_line_start_is_dropped() -> None:
    assert segment("좋아요\n!) 다음") == ["좋아요", "다음"]


def test_open_quote_waits_one_character_and_keeps_the_closing_quote() -> None:
    seg = SentenceSegmenter()
    assert seg.push('그가 "좋아요!') == []
    assert seg.push('"') == []
    assert seg.push(" 다음") == ['그가 "좋아요!"']
    assert seg.flush() == ["다음"]


def test_quoted_exclamation_followed_by_particle_stays_one_sentence() -> None:
    assert segment('그는 "좋아요!"라고 말했어요.') == ['그는 "좋아요!"라고 말했어요.']


def test_english_period_attaches_closing_marks() -> None:
    assert segment('He said "fine." Then (he left.) OK') == ['He said "fine."', "Then (he left.)", "OK"]


def test_ellipsis_run_is_kept_together() -> None:
    assert segment("Well... I see. And then…… fine") == ["Well...", "I see.", "And then……", "fine"]


def test_korean_period_before_ellipsis_keeps_the_ellipsis() -> None:
    assert segment("그게... 잘 모르겠어요") == ["그게...", "잘 모르겠어요"]


# Dots that do not end a sentence ------------------------------------------------------------------------------


def test_decimal_point_does_not_split() -> None:
    assert segment("It costs 3.5 dollars. 총 12.75킬로예요.") == ["It costs 3.5 dollars.", "총 12.75킬로예요."]


@pytest.mark.parametrize("abbreviation", ["Dr.", "Mr.", "Mrs.", "Prof.", "e.g.", "i.e.", "J."])
def test_abbreviation_does_not_split(abbreviation: str) -> None:
    text = f"Ask {abbreviation} Kim about it."
    assert segment(text, lang="en") == [text]


def test_soft_abbreviation_splits_only_before_capital_or_hangul() -> None:
    assert segment("Apples, pears, etc. are fine. We, etc. Then go.", first_clause_split=False) == [
        "Apples, pears, etc. are fine.",
        "We, etc.",
        "Then go.",
    ]
    assert segment("I live in the U.S. 서울은 아니에요") == ["I live in the U.S.", "서울은 아니에요"]
    assert segment("Open at 9 a.m. daily.") == ["Open at 9 a.m. daily."]


def test_korean_date_and_inline_list_numbers_do_not_split() -> None:
    text = "예약일은 2024. 3. 15. 오후예요."
    assert segment(text, first_clause_split=False) == [text]
    assert segment("순서는 1. 본인 확인 2. 예약 변경입니다.", first_clause_split=False) == [
        "순서는 1. 본인 확인 2. 예약 변경입니다."
    ]
    assert segment("The answer is 42. Next", lang="en") == ["The answer is 42.", "Next"]


def test_url_and_email_do_not_split() -> None:
    text = "자세한 내용은 example.com 또는 a.b@c.kr 로 문의하세요."
    assert segment(text, first_clause_split=False) == [text]


def test_english_sentence_end_needs_one_character_of_lookahead() -> None:
    seg = SentenceSegmenter(lang="en")
    assert seg.push("Hello there.") == []
    assert seg.push(" How") == ["Hello there."]
    assert seg.flush() == ["How"]


def test_list_number_mid_text_is_text() -> None:
    assert segment("1.5배 빨라요\n-5도예요\n#1 인기", first_clause_split=False) == [
        "1.5배 빨라요",
        "-5도예요",
        "#1 인기",
    ]


# Markdown, emoji, whitespace ----------------------------------------------------------------------------------


def test_markdown_is_not_spoken() -> None:
    text = "## 예약 안내\n- **날짜**: 내일\n* __시간__: `10:00`\n> 참고 하세요\n  3) 끝"
    assert segment(text) == ["예약 안내", "날짜: 내일", "시간: 10:00", "참고 하세요", "끝"]


def test_single_underscore_is_kept() -> None:
    assert segment("메일은 kim_lee@test.kr 입니다.") == ["메일은 kim_lee@test.kr 입니다."]


def test_emoji_are_removed() -> None:
    assert segment("좋아요 👍🏽! 완료 ✅ 했어요 ❤️ 1️⃣ 번") == ["좋아요 !", "완료 했어요", "1 번"]


def test_whitespace_is_normalised_and_empty_sentences_are_not_emitted() -> None:
    assert segment("  안녕하세요   반갑습니다\t\t\n\n\n  ---\n ...  \r\n끝.  ") == ["안녕하세요", "반갑습니다", "끝."]


def test_newline_splits_even_without_punctuation() -> None:
    assert segment("first line\nsecond line", lang="en") == ["first line", "second line"]


# Length limits --------------------------------------------------------------------------------------------------


def test_long_sentence_is_cut_as_soon_as_it_overflows() -> None:
    seg = SentenceSegmenter(max_chars=30, first_clause_split=False)
    assert seg.push("one two three four five six seven eight") == ["one two three four five six"]
    assert seg.flush() == ["seven eight"]


def test_long_sentence_prefers_a_comma() -> None:
    out = segment("이것은 아주 긴 문장인데, 쉼표가 중간에 있고 끝까지 마침표가 없는 문장", max_chars=30)
    assert out[1] == "쉼표가 중간에 있고 끝까지 마침표가 없는 문장"


def test_runaway_text_without_spaces_is_hard_cut() -> None:
    assert segment("가" * 50, max_chars=20, first_clause_split=False) == ["가" * 20, "가" * 20, "가" * 10]


def test_first_clause_split_at_comma() -> None:
    assert segment("Sure, I can book that table for you tonight at seven.", lang="en") == [
        "Sure, I can book that table for you tonight at seven."
    ]
    assert segment("Of course, I can book that table for you tonight.", lang="en") == [
        "Of course,",
        "I can book that table for you tonight.",
    ]


def test_first_clause_split_only_for_long_first_sentence() -> None:
    assert segment("네 고객님, 확인했습니다.") == ["네 고객님, 확인했습니다."]


def test_first_clause_split_only_for_the_first_sentence() -> None:
    text = "네 알겠습니다. 오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?"
    assert segment(text) == ["네 알겠습니다.", "오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?"]


def test_first_clause_split_can_be_disabled() -> None:
    text = "오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?"
    assert segment(text, first_clause_split=False) == [text]


def test_first_clause_is_never_a_tiny_fragment_unless_an_acknowledgement() -> None:
    assert segment("글쎄, 그럼 내일 오후 세 시로 예약을 바로 도와드리겠습니다.")[0] != "글쎄,"
    assert segment("아니요, 그건 어렵습니다.") == ["아니요, 그건 어렵습니다."]
    assert segment("네, 그럼 내일 오후 세 시로 예약을 바로 도와드리겠습니다.")[0] == "네,"


def test_leading_acknowledgement_is_spoken_as_soon_as_its_comma_is_confirmed() -> None:
    for ack in ("네", "예", "알겠습니다", "물론이죠", "감사합니다"):
        seg = SentenceSegmenter()
        assert seg.push(f"{ack},") == []  # could still be "네,네" — wait for the next character
        assert seg.push(" ") == [f"{ack},"]
    # only the first sentence of an answer, and only in Korean
    assert segment("좋은 질문이에요. 네, 가능합니다.") == ["좋은 질문이에요.", "네, 가능합니다."]
    assert SentenceSegmenter(lang="en").push("Yes, of course. ") == ["Yes, of course."]


def test_flush_resets_for_the_next_answer() -> None:
    seg = SentenceSegmenter()
    assert seg.push('그가 "오늘 날씨가 정말 좋은데') == []
    assert seg.flush() == ['그가 "오늘 날씨가 정말 좋은데']
    assert seg.push("오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?") == ["오늘 날씨가 정말 좋은데"]
    assert seg.flush() == ["산책하러 나가시는 건 어떠세요?"]


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        SentenceSegmenter(max_chars=5)
    with pytest.raises(ValueError):
        SentenceSegmenter(first_clause_min_chars=-1)


# LLM-like token streams: the sentence comes out on the token after its end (or at flush) ---------------------


def test_sentences_come_out_on_the_token_after_their_end() -> None:
    tokens = ["네", ", ", "예약", " 도", "와드", "리겠", "습니", "다.", " 몇", " 시", "로 ", "해 ", "드릴", "까요", "?"]
    out = stream(tokens)
    assert out[tokens.index(", ")] == ["네,"]
    assert out[tokens.index(" 몇")] == ["예약 도와드리겠습니다."]
    assert out[-1] == ["몇 시로 해 드릴까요?"]  # the end of the answer confirms the last one
    assert sum(len(o) for o in out) == 3


def test_korean_ending_comes_out_on_the_token_of_the_next_word() -> None:
    tokens = ["가격", "은 ", "3.", "5만", "원이", "고요", " ", "주차", "는 ", "무료", "예요"]
    out = stream(tokens)
    assert out[tokens.index("주차")] == ["가격은 3.5만원이고요"]
    assert out[-1] == ["주차는 무료예요"]


def test_first_clause_comes_out_when_the_sentence_proves_long() -> None:
    text = "오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?"
    tokens = [text[i : i + 2] for i in range(0, len(text), 2)]
    out = stream(tokens)
    first = next(i for i, o in enumerate(out) if o)
    # "어" is the 26th character of the sentence (the space before it is not written until it comes): it proves
    # the sentence longer than first_clause_min_chars.
    assert first == text.index("어") // 2
    assert out[first] == ["오늘 날씨가 정말 좋은데"]


# Properties -------------------------------------------------------------------------------------------------------

_HANGUL = st.integers(0xAC00, 0xD7A3).map(chr)
_ENDINGS = "습니다 니다 요 어요 죠 까요 입니까 했다 는데 지만 니까 어서 필요".split()
_KOREAN_WORDS = st.builds(
    lambda stem, ending: stem + ending,
    st.text(_HANGUL, min_size=1, max_size=4),
    st.sampled_from(["", "", *_ENDINGS]),
)
_OTHER_WORDS = "hello World Dr. Mr. e.g. U.S. etc. a.m. Inc. J. 3.5 12 0 2024. example.com a.b@c.kr kim_lee".split()
_SEPARATORS = [" ", " ", " ", "", "  ", "\n", "\n\n", "\r\n", "\t", ", "]
_PUNCTUATION = '. . .. ... ! ? ?! … 。 ！ ？ , 、 " \' “ ” ( ) 「 」 ] : - ~ % ." !" ?)'.split()
_MARKDOWN = ["**", "__", "_", "`", "# ", "## ", "- ", "* ", "1. ", "2) ", "> ", "•"]
_EMOJI = ["😀", "👍🏽", "❤️", "1️⃣", "✅", "\u200d"]
_FRAGMENTS = st.one_of(
    st.builds(str.__add__, st.one_of(_KOREAN_WORDS, st.sampled_from(_OTHER_WORDS)), st.sampled_from(_SEPARATORS)),
    st.sampled_from(_SEPARATORS + _PUNCTUATION + _MARKDOWN + _EMOJI),
)
_TEXTS = st.lists(_FRAGMENTS, max_size=40).map("".join)
_CONFIGS = st.sampled_from(
    [
        {},
        {"lang": "en"},
        {"first_clause_split": False},
        {"max_chars": 20, "first_clause_min_chars": 8},
        {"lang": "en", "max_chars": 12, "first_clause_min_chars": 0},
    ]
)
# What the segmenter removes before it looks at lines: always-dropped markup and emoji, then "__" pairs.
_DROPPED = re.compile(r"[*`•\u200d\u20e3\ufe0f\U0001F000-\U0001FAFF\u2600-\u27BF]")
_LIST_MARKERS = re.compile(r"(?m)^[^\S\n]*(?:(?:\d{1,3}[.)]|#+|[->+])[^\S\n]+)+")


@st.composite
def _chunked(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(_TEXTS)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text) + 1)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=800, deadline=None)
@given(_chunked(), _CONFIGS)
def test_output_does_not_depend_on_chunking(chunked: tuple[str, list[str]], config: dict[str, object]) -> None:
    text, chunks = chunked
    seg = SentenceSegmenter(**config)  # type: ignore[arg-type]
    streamed = [s for c in chunks for s in seg.push(c)] + seg.flush()
    assert streamed == segment(text, **config)
    # One character per token, as the slowest possible stream, and reuse after flush().
    assert [s for c in text for s in seg.push(c)] + seg.flush() == streamed


def _is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


@settings(max_examples=1000, deadline=None)
@given(_TEXTS, _CONFIGS)
def test_output_is_the_input_minus_markup_emoji_whitespace_and_stray_punctuation(
    text: str, config: dict[str, object]
) -> None:
    out = segment(text, **config)
    max_chars = config.get("max_chars", 120)
    assert isinstance(max_chars, int)
    for sentence in out:
        assert sentence and sentence == sentence.strip()
        assert "\n" not in sentence and "  " not in sentence
        assert len(sentence) <= max_chars
        assert not any(ch in "*`•" or _is_emoji(ch) for ch in sentence)
        assert any(ch.isalnum() for ch in sentence)
    spoken = "".join(out).replace(" ", "")
    source = "".join(_LIST_MARKERS.sub("", _DROPPED.sub("", text).replace("__", "")).split())
    # In order, and only punctuation removed: no letter or digit is lost, duplicated or invented.
    assert _is_subsequence(spoken, source)
    assert [ch for ch in spoken if ch.isalnum()] == [ch for ch in source if ch.isalnum()]
