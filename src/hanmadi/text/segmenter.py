"""Incremental sentence segmentation of a streamed LLM answer (Korean first, English, CJK).

The LLM streams text token by token; the engine starts TTS for a sentence the moment this module says it is
complete. :class:`SentenceSegmenter` is a character-level transducer in two layers:

1. *cleaning* drops what must not be spoken: markdown markup (``**``, ``__``, backticks, ``#`` headings, list
   markers ``- `` ``* `` ``+ `` ``> `` ``1. `` ``1) `` at line start, bullets) and emoji;
2. *segmentation* normalises whitespace and decides where sentences end.

Every decision is a function of the text seen so far plus, where the end is ambiguous, a few characters of
lookahead; it never depends on where the chunk boundaries fall. That is what makes the output independent of
tokenisation (see :class:`SentenceSegmenter` for the precise properties).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["SentenceSegmenter"]

_TERMINALS = frozenset(".!?…‥。！？")
_CLOSERS = frozenset("\"'”’)]}」』》〉）］")
_OPENERS = frozenset("([{「『“‘《〈（［")
# Punctuation that cannot begin a spoken sentence: a stray "!" or closing mark at the start of a line or after a
# sentence cut by a newline or by its length is dropped (see the class docstring).
_LEADING_DROP = (_TERMINALS | _CLOSERS | frozenset(",、，;:")) - frozenset("\"'")
_CJK_COMMAS = frozenset("、，")
# Markup that is never spoken, wherever it appears. "_" is handled separately: only "__" is markup.
_MARKUP = frozenset("*`•‣⁃")

# Abbreviations whose dot never ends a sentence (compared lower-case, without the dot).
_TITLE_ABBREVIATIONS = frozenset(
    "dr mr mrs ms prof st mt vs fig figs gen col lt sgt capt rev hon approx dept univ ave blvd rd "
    "e.g i.e cf viz al".split()
)
# Abbreviations that often end a sentence: the dot ends one only if whitespace and then an upper-case letter,
# a non-Latin letter (Hangul) or an opening mark follow. Dotted letter groups (U.S., a.m.) behave the same.
_SOFT_ABBREVIATIONS = frozenset("etc inc ltd co corp jr sr".split())

# Words ending in 요 that are nouns, not the polite sentence-final ending (필요 없어요, 소요 시간).
_YO_NOUNS = frozenset("필요 중요 주요 수요 개요 강요 소요 요요 노요 사요 월요".split())
# Korean connective endings that close a clause, for the first-clause split (only before a space).
_KO_CONNECTIVES = frozenset("는데 은데 인데 지만 니까 어서 아서 해서 여서 면서".split())
# Acknowledgements a Korean agent opens with ("네, 확인해 드릴게요"): spoken on their own the moment the comma is
# confirmed, without waiting to learn that the sentence is long — the caller hears "네," a few tokens in.
_KO_ACKNOWLEDGEMENTS = frozenset(
    "네 예 네네 아 아네 음 그럼요 물론이죠 물론입니다 알겠습니다 좋습니다".split()
    + "감사합니다 죄송합니다 맞습니다 맞아요 그렇군요".split()
)

_HANGUL_FIRST = 0xAC00
_HANGUL_LAST = 0xD7A3
_JONG_B = 17  # final consonant ㅂ: 합니다, 습니다, 입니까
_JONG_SS = 20  # final consonant ㅆ: 했다, 있었다, 하겠다

_MIN_CLAUSE_CHARS = 6

# Characters that need no decision in the common state: appended as they are.
_PLAIN = frozenset(
    [chr(cp) for cp in range(_HANGUL_FIRST, _HANGUL_LAST + 1)]
    + [chr(cp) for cp in range(ord("a"), ord("z") + 1)]
    + [chr(cp) for cp in range(ord("A"), ord("Z") + 1)]
    + [chr(cp) for cp in range(ord("0"), ord("9") + 1)]
)


def _is_emoji(ch: str) -> bool:
    """Emoji, pictographs, their modifiers and joiners, arrows and shapes: not speakable."""
    cp = ord(ch)
    if cp < 0x200D:
        return False
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2190 <= cp <= 0x21FF
        or 0x2300 <= cp <= 0x23FF
        or 0x25A0 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or cp in (0x200D, 0x20E3, 0xFE0E, 0xFE0F, 0x3030, 0x303D, 0x3297, 0x3299)
        or 0xE0020 <= cp <= 0xE007F
    )


def _is_hangul(ch: str) -> bool:
    return "가" <= ch <= "힣"


def _jong(ch: str) -> int:
    """Index of the final consonant (batchim) of a Hangul syllable, 0 for none."""
    return (ord(ch) - _HANGUL_FIRST) % 28


class _Mode(Enum):
    NORMAL = 0
    # An end candidate sits at the end of the buffer: more terminal punctuation and closing marks extend it,
    # whitespace or the end of the answer confirms it, anything else cancels it (3.5, example.com, "네!"라고).
    PENDING_END = 1
    # A Korean sentence-final ending followed by whitespace: the next word confirms the end.
    KOREAN_ENDING = 2
    # The dot of an abbreviation like "etc." or "U.S.": see _SOFT_ABBREVIATIONS.
    SOFT_ABBREVIATION = 3
    # A certain sentence end (!, ?, a Korean dot) at the end of the buffer: the rest of its closing run (?!, ...,
    # a closing quote) is kept as written; whitespace, the end of the answer or any other character confirms
    # the end, except a letter right after a closing mark: a quotation goes on ('…싶어요.'라고 말씀하셨네요).
    CLOSING_RUN = 4


class SentenceSegmenter:
    """Cut a streamed LLM answer into speakable sentences, as early as the text allows.

    Feed the answer with :meth:`push` as it streams and finish it with :meth:`flush`; both return the sentences
    completed so far, in order. After :meth:`flush` the segmenter is reset for the next answer.

    Where a sentence ends:

    * ``!``, ``?``, ``。``, ``！``, ``？`` and a ``.`` right after a Hangul syllable (or another non-Latin letter,
      or punctuation) certainly end a sentence; **one character of lookahead** keeps the closing run as written:
      ``잠시만요...`` stays ``잠시만요...``, ``정말요?!`` stays ``정말요?!``, a closing quote or bracket stays
      attached. Whitespace, the end of the answer or any other character confirms the end
      (``push("안녕하세요!") == []``, ``push(" ") == ["안녕하세요!"]``), except a letter right after a closing mark:
      a quotation goes on (``'…변경하고 싶어요.'라고 말씀하셨네요.`` is one sentence). While a quote or bracket is
      open in the current line any character but punctuation continues the sentence (``"좋아요!라고``).
    * A ``.`` after a Latin letter or a digit, ``…`` and ``..`` wait for the next character: a letter or digit
      means a decimal point, a URL or an e-mail (``3.5``, ``example.com``, ``a.b@c.kr``); more terminal
      punctuation or closing marks are attached; whitespace or the end of the answer confirms the end.
      Abbreviations (``Dr.``, ``Mr.``, ``e.g.``, single initials) never end a sentence; ``etc.``, ``Inc.``,
      ``U.S.``, ``a.m.`` end one only when followed by whitespace and an upper-case or non-Latin letter. With
      ``lang="ko"`` a dot after a bare number never ends a sentence (``2024. 3. 15.``, ``1. 확인 2. 변경``).
    * A newline always ends a sentence; markdown list markers and headings at line start are removed.
    * With ``lang="ko"``, a sentence-final ending without punctuation ends a sentence when whitespace and
      then a word follow: ``…요`` (not a lone 요 nor the nouns 필요, 중요, 소요…), ``…죠``, ``…ㅂ니다``,
      ``…ㅂ니까`` and ``…ㅆ다`` (했다, 있다). ``가격은 3.5만원이고요 주차는 무료예요`` is two sentences.
    * A sentence longer than ``max_chars`` is cut as soon as it overflows, after the last ``, `` in its second
      half, else at its last space, else hard at ``max_chars``.
    * First-clause split: when the first sentence of an answer grows beyond ``first_clause_min_chars``, it is
      cut after its first clause of at least 6 characters ending in ``, `` (or ``、``/``，``), or, with
      ``lang="ko"``, in a connective ending before a space (``는데``, ``은데``, ``인데``, ``지만``, ``니까``,
      ``어서``, ``아서``, ``해서``, ``여서``, ``면서``), so the first audio starts sooner. With ``lang="ko"`` an
      answer that opens with an acknowledgement and a comma (``네,``, ``예,``, ``알겠습니다,`` …) has it spoken on its
      own at once, however long the sentence turns out to be.

    Punctuation that would start a sentence (``. ! ? … , ; :`` and closing marks — after a newline, or after a
    sentence cut for its length) is dropped. It does not change what is spoken.

    Properties, for any text and any split of it into chunks (tested with hypothesis):

    1. Chunking invariance: ``[s for c in chunks for s in push(c)] + flush()`` equals
       ``push(text) + flush()``.
    2. Nothing spoken is lost or invented: joining the sentences and deleting whitespace gives the input with
       whitespace deleted and only these characters removed, order preserved: markup and emoji, list-marker
       numbers at line start, stray punctuation as above, and sentences without any letter or digit (``---``).
       Every sentence is non-empty, stripped, has no newline or double space, and is at most ``max_chars`` long.
    """

    def __init__(
        self,
        lang: str = "ko",
        max_chars: int = 120,
        first_clause_split: bool = True,
        first_clause_min_chars: int = 25,
    ) -> None:
        if max_chars < 2 * _MIN_CLAUSE_CHARS:
            raise ValueError(f"max_chars must be at least {2 * _MIN_CLAUSE_CHARS}, got {max_chars}")
        if first_clause_min_chars < 0:
            raise ValueError(f"first_clause_min_chars must be >= 0, got {first_clause_min_chars}")
        self.lang = lang
        self.max_chars = max_chars
        self.first_clause_split = first_clause_split
        self.first_clause_min_chars = first_clause_min_chars
        # "ko-KR" and "ko" both enable the Korean rules.
        self._korean = lang.lower().split("-")[0].split("_")[0] == "ko"
        self._out: list[str] = []
        self._reset()

    def _reset(self) -> None:
        # Cleaning layer.
        self._line_start = True
        self._marker = ""  # a possible list marker / heading at line start, not yet decided
        self._underscore = False  # a "_" waiting to see whether it is "__"
        # Segmentation layer.
        self._buf: list[str] = []
        self._space_pending = False  # whitespace seen after the buffer; written only if a character follows
        self._mode = _Mode.NORMAL
        self._quote_open = False  # an ASCII " is open in the current line
        self._open_marks = 0  # brackets and curly quotes open in the current line
        self._first = self.first_clause_split  # still in the first sentence of the answer
        self._clause_at = -1  # where the first clause ends, once found
        self._limit = self.max_chars  # buffer length that triggers _overflow()
        self._fast = False  # _PLAIN characters may bypass _feed()

    def push(self, chunk: str) -> list[str]:
        """Feed the next chunk of the answer; return the sentences it completed (often none)."""
        out: list[str] = []
        self._out = out
        buf = self._buf
        for ch in chunk:
            if self._fast and ch in _PLAIN:
                # The hot path: a letter or digit in the middle of a line, nothing pending.
                if self._space_pending:
                    buf.append(" ")
                    self._space_pending = False
                buf.append(ch)
                if len(buf) > self._limit:
                    self._overflow()
            elif ch == " " and self._fast:
                # The other hot path: a word ended (see _normal()).
                if buf and not self._space_pending:
                    self._space_pending = True
                    self._word_end()
                    self._fast = self._mode is _Mode.NORMAL
            else:
                self._feed(ch)
                buf = self._buf
        return out

    @property
    def holds_end(self) -> bool:
        """The buffer ends with a certain sentence end still waiting for one character to close its run."""
        return self._mode is _Mode.CLOSING_RUN

    def confirm_end(self) -> list[str]:
        """Emit a sentence whose certain end is waiting for its closing run (:attr:`holds_end`), without waiting.

        For a stream that went quiet after ``…요.``: the engine should not hold a sentence hostage to the next
        token. Punctuation of the run that arrives later is dropped as stray. Returns ``[]`` otherwise.
        """
        if self._mode is not _Mode.CLOSING_RUN:
            return []
        out: list[str] = []
        self._out = out
        self._cut()
        self._update_fast()
        return out

    def flush(self) -> list[str]:
        """End the answer: return the remaining sentences and reset for the next answer."""
        out: list[str] = []
        self._out = out
        if self._underscore:
            self._underscore = False
            self._line_char("_")
        if self._marker:
            self._emit_marker()
        self._cut()
        self._reset()
        return out

    # Cleaning layer -------------------------------------------------------------------------------------------

    def _feed(self, ch: str) -> None:
        if ch in _MARKUP or _is_emoji(ch):
            return
        if self._underscore:
            self._underscore = False
            if ch == "_":
                self._update_fast()
                return
            self._line_char("_")
        if ch == "_":
            self._underscore = True
            self._fast = False
            return
        self._line_char(ch)
        self._update_fast()

    def _update_fast(self) -> None:
        self._fast = not self._line_start and not self._underscore and self._mode is _Mode.NORMAL

    def _line_char(self, ch: str) -> None:
        """Strip list markers and headings at line start, then pass characters on."""
        if ch == "\r":
            ch = "\n"
        elif ch != "\n" and ch.isspace():
            ch = " "  # tabs, no-break and ideographic spaces
        if not self._line_start:
            if ch == "\n":
                self._line_start = True
            self._seg(ch)
            return
        if ch == "\n":
            if self._marker:
                self._emit_marker()
            self._seg(ch)
            self._line_start = True
            return
        if ch == " ":
            marker = self._marker
            if not marker:
                return  # indentation
            if marker[0] in "#->+" or marker[-1] in ".)":
                self._marker = ""  # a complete marker: not spoken
                return
            self._emit_marker()
            self._seg(ch)
            return
        marker = self._marker
        if not marker:
            if ch in "#->+" or "0" <= ch <= "9":
                self._marker = ch
                return
        elif marker[0] == "#":
            if ch == "#":
                self._marker += ch
                return
        elif "0" <= marker[0] <= "9" and marker[-1] not in ".)":
            if ("0" <= ch <= "9" and len(marker) < 3) or ch in ".)":
                self._marker += ch
                return
        if marker:
            self._emit_marker()
        self._line_start = False
        self._seg(ch)

    def _emit_marker(self) -> None:
        """The line-start characters were text after all (-5도, 1.5배, #1): pass them on."""
        marker = self._marker
        self._marker = ""
        self._line_start = False
        for ch in marker:
            self._seg(ch)

    # Segmentation layer ---------------------------------------------------------------------------------------

    def _seg(self, ch: str) -> None:
        mode = self._mode
        if mode is not _Mode.NORMAL:
            if mode is _Mode.PENDING_END:
                done = self._resolve_pending_end(ch)
            elif mode is _Mode.CLOSING_RUN:
                done = self._resolve_closing_run(ch)
            elif mode is _Mode.KOREAN_ENDING:
                done = self._resolve_korean_ending(ch)
            else:
                done = self._resolve_soft_abbreviation(ch)
            if done:
                return
        self._normal(ch)

    def _resolve_pending_end(self, ch: str) -> bool:
        if ch in _TERMINALS or ch in _CLOSERS:
            if ch == '"':
                self._quote_open = False  # after terminal punctuation a quote closes
                self._append(ch)
            else:
                self._append_mark(ch)
            return True
        self._mode = _Mode.NORMAL
        if ch == " " or ch == "\n":
            self._cut()
        return False

    def _resolve_closing_run(self, ch: str) -> bool:
        if ch in _TERMINALS or ch in _CLOSERS:
            if ch == '"' or ch == "'":
                self._append(ch)  # after terminal punctuation a quote closes
            else:
                self._append_mark(ch)
            return True
        self._mode = _Mode.NORMAL
        if not (ch.isalnum() and self._buf and self._buf[-1] in _CLOSERS):
            self._cut()
        return False

    def _resolve_korean_ending(self, ch: str) -> bool:
        if ch == " ":
            return True
        self._mode = _Mode.NORMAL
        if ch.isalnum() or ch in _OPENERS or ch == '"' or ch == "'":
            self._cut()
        return False

    def _resolve_soft_abbreviation(self, ch: str) -> bool:
        if ch == " ":
            self._space_pending = True
            return True
        if not self._space_pending:
            if ch in _TERMINALS or ch in _CLOSERS:
                self._mode = _Mode.PENDING_END
                return self._resolve_pending_end(ch)
            self._mode = _Mode.NORMAL
            return False
        self._mode = _Mode.NORMAL
        if ch.isupper() or (ch.isalpha() and not ch.isascii()) or ch in _OPENERS or ch == '"':
            self._cut()
        return False

    def _normal(self, ch: str) -> None:
        buf = self._buf
        if ch == " ":
            if buf and not self._space_pending:
                self._space_pending = True
                self._word_end()
            return
        if ch == "\n":
            self._cut()
            self._quote_open = False
            self._open_marks = 0
            return
        if not buf:
            if ch in _LEADING_DROP:
                if ch in _CLOSERS:
                    self._open_marks = max(0, self._open_marks - 1)
                return
            if ch == '"' and self._quote_open:
                self._quote_open = False  # closes a quote opened in an emitted sentence
                return
        if ch in _TERMINALS:
            self._append(ch)
            self._terminal(ch)
        elif ch in _OPENERS or ch in _CLOSERS:
            self._append_mark(ch)
        else:
            self._append(ch)
            if ch in _CJK_COMMAS:
                self._clause_boundary()

    def _append(self, ch: str) -> None:
        buf = self._buf
        if self._space_pending:
            buf.append(" ")
            self._space_pending = False
        buf.append(ch)
        if len(buf) > self._limit:
            self._overflow()

    def _append_mark(self, ch: str) -> None:
        """Append a quote or bracket and track whether one is open (a certain end needs none open)."""
        if ch == '"':
            self._quote_open = not self._quote_open
        elif ch in _OPENERS:
            self._open_marks += 1
        elif ch != "'" and self._open_marks:
            self._open_marks -= 1
        self._append(ch)

    def _terminal(self, ch: str) -> None:
        """Decide what the terminal punctuation just appended means."""
        if ch == "." and not self._dot_ends_now():
            return
        if ch in "!?。！？." and not self._quote_open and not self._open_marks:
            self._mode = _Mode.CLOSING_RUN  # certain: one more character tells where the closing run ends
        elif self._mode is _Mode.NORMAL:
            self._mode = _Mode.PENDING_END

    def _dot_ends_now(self) -> bool:
        """True if the dot just appended ends a sentence at once; otherwise sets the mode it waits in."""
        buf = self._buf
        prev = buf[-2] if len(buf) >= 2 else " "
        if (prev.isalpha() and not prev.isascii()) or not prev.isalnum():
            return True  # 했습니다. / 요. / 네. / (참고). / 50%.
        start = len(buf) - 2
        while start > 0 and buf[start - 1] != " " and buf[start - 1] not in _OPENERS and buf[start - 1] != '"':
            start -= 1
        word = "".join(buf[start:-1]).lower()
        if prev.isdigit():
            if self._korean and all(ch.isdigit() or ch == "." for ch in word):
                # Korean sentences do not end in a bare number; dates (2024. 3. 15.) and inline lists do.
                return False
            self._mode = _Mode.PENDING_END  # 3.5
            return False
        if word in _TITLE_ABBREVIATIONS or len(word) == 1:
            return False  # Dr. / J. K. / the "e." of e.g.
        if word in _SOFT_ABBREVIATIONS or ("." in word and all(len(p) == 1 for p in word.split("."))):
            self._mode = _Mode.SOFT_ABBREVIATION  # etc. / U.S. / a.m.
            return False
        self._mode = _Mode.PENDING_END  # example.com
        return False

    def _word_end(self) -> None:
        """Whitespace followed a word: a Korean sentence-final ending or a clause boundary?"""
        buf = self._buf
        if self._mode is _Mode.NORMAL and self._korean and _ends_korean_sentence(buf):
            self._mode = _Mode.KOREAN_ENDING
            return
        last = buf[-1]
        if last == "," or (self._korean and len(buf) >= 2 and buf[-2] + last in _KO_CONNECTIVES):
            self._clause_boundary()

    def _clause_boundary(self) -> None:
        """The buffer ends a clause; the first one of a long first sentence is emitted on its own."""
        if not self._first or self._clause_at >= 0:
            return
        if self._korean and "".join(self._buf[:-1]).replace(" ", "") in _KO_ACKNOWLEDGEMENTS:
            self._cut_at(len(self._buf), len(self._buf))
            return
        if len(self._buf) < _MIN_CLAUSE_CHARS:
            return
        self._clause_at = len(self._buf)
        if len(self._buf) > self.first_clause_min_chars:
            self._cut_at(self._clause_at, self._clause_at)
        else:
            # Cut once the sentence proves long.
            self._limit = min(self.max_chars, self.first_clause_min_chars)

    def _overflow(self) -> None:
        """The buffer grew past the first-clause threshold or past max_chars."""
        buf = self._buf
        if self._clause_at >= 0 and len(buf) > self.first_clause_min_chars:
            self._cut_at(self._clause_at, self._clause_at)
            buf = self._buf
        limit = self.max_chars
        if len(buf) <= limit:
            return
        comma = space = -1
        for i in range(limit - 1, 0, -1):
            ch = buf[i]
            if ch == " ":
                if space < 0:
                    space = i
                if i >= limit // 2 and buf[i - 1] == ",":
                    comma = i
                    break
            elif ch in _CJK_COMMAS and i + 1 >= limit // 2 and comma < 0:
                comma = i + 1
                break
        if comma > 0:
            self._cut_at(comma, comma)
        elif space > 0:
            self._cut_at(space, space + 1)
        else:
            self._cut_at(limit, limit)

    def _cut_at(self, end: int, rest: int) -> None:
        """Emit buf[:end] as a sentence and keep buf[rest:] as the start of the next one."""
        buf = self._buf
        self._emit("".join(buf[:end]).rstrip())
        del buf[:rest]
        while buf and buf[0] == " ":
            del buf[0]
        if not buf:
            self._space_pending = False
        self._clause_at = -1
        self._limit = self.max_chars

    def _cut(self) -> None:
        """Emit the whole buffer as a sentence."""
        if self._buf:
            self._emit("".join(self._buf))
            self._buf = []
        self._space_pending = False
        self._mode = _Mode.NORMAL
        self._clause_at = -1
        self._limit = self.max_chars

    def _emit(self, sentence: str) -> None:
        # A sentence without a letter or digit ("---", a lone quote) is not worth a TTS request.
        if any(ch.isalnum() for ch in sentence):
            self._out.append(sentence)
            self._first = False


def _ends_korean_sentence(buf: list[str]) -> bool:
    """The buffer ends with a Korean sentence-final ending (without punctuation); conservative by design."""
    n = len(buf)
    if n < 2:
        return False
    last, prev = buf[-1], buf[-2]
    if not _is_hangul(prev):
        return False
    if last == "요":
        return prev + last not in _YO_NOUNS
    if last == "죠":
        return True
    if last == "다" and _jong(prev) == _JONG_SS:
        return True  # 했다, 있었다, 하겠다
    if (last == "다" or last == "까") and prev == "니" and n >= 3:
        before = buf[-3]
        return _is_hangul(before) and _jong(before) == _JONG_B  # 합니다, 습니다, 입니까 (not 그러니까)
    return False
