"""The business's knowledge: the file (``HANMADI_KNOWLEDGE_FILE``), Korean-aware retrieval over it, a fact guard.

The file is YAML or JSON::

    entries:
      - questions: ["주차 가능한가요?", "주차비는 얼마예요?"]
        answer: "건물 지하 주차장에서 2시간 무료입니다."
    facts: ["가게 이름은 한마디 키친입니다."]

Retrieval has to survive what a phone line does to a question: Korean spacing is optional and often wrong
(``파스타는어떤것들이있나요``), particles and endings change (``주차 돼?`` / ``주차는 가능한가요``) and the recogniser
swaps similar syllables (``주자``, ``부레이크 타임``). So each clause is first cut down to its *topic* — fillers
(``저기요 혹시``) dropped, particles cut off each word, the question's frame (``…가능한가요``, ``…알려 주세요``)
cut off its end, spaces removed — and compared as a bag of features: syllable 1–3-grams (words still match when
split or joined differently), jamo 2–3-grams (one wrong consonant or vowel still scores) and syllable pairs of a
rough *sound* of each syllable (tense/aspirated consonants as plain, ㅐ/ㅔ as one vowel, final consonants as
pronounced: ``주자`` ≈ ``주차``, ``패이`` ≈ ``페이``). Features are weighted by BM25's inverse document frequency;
a question scores by cosine with the query (sublinear tf), an entry's answer and a fact — statements, longer than
a question — by the share of the query they cover, discounted. An entry scores as its best document. Scores are
confidences in [0, 1] comparable between queries; a query costs an inverted-index walk (~0.1–0.3 ms for a file
of a few dozen entries).

``FactGuard`` is what lets a small model near the facts: it finds the numbers (digits or Korean number words with
a counter — ``두 시간``, ``만 오천 원``), and place names (``…역``, ``…빌딩``…) in a sentence and says which ones
are not in the knowledge (nor in the caller's own words).

``KnowledgeSource`` holds the current knowledge of a process and reloads it when the file changes or on SIGHUP;
a file that no longer validates keeps the old knowledge, with a log line and ``hanmadi_knowledge_reloads_total
{outcome="error"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import signal
import unicodedata
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from hanmadi import metrics

log = logging.getLogger("hanmadi.knowledge")

HitKind = Literal["entry", "fact"]

# An entry's answer is matched too (callers use its words: "지하 주차장 있어요?"), worth less than a question.
ANSWER_WEIGHT: Final = 0.75
FACT_WEIGHT: Final = 0.85
_SYLLABLE_WEIGHTS: Final = {1: 0.35, 2: 1.0, 3: 0.8}
_JAMO_WEIGHT: Final = 0.55
_JAMO_NS: Final = (2, 3)
_SOUND_WEIGHT: Final = 0.6

# Words that open or pad a caller's line and say nothing about what is asked.
_FILLERS: Final = (
    "안녕하세요",
    "여보세요",
    "저기요",
    "저기",
    "혹시",
    "그런데",
    "근데",
    "그러니까",
    "그",
    "음",
    "어",
    "아",
    "네",
    "예",
    "좀",
    "제가",
    "저",
    "요",
)
_FILLER_RE: Final = re.compile(r"^(?:" + "|".join(sorted(map(re.escape, _FILLERS), key=len, reverse=True)) + r")$")
_WORD_RE: Final = re.compile(r"[0-9a-z가-힣]+")

# How callers end a question whatever it is about ("…가능한가요", "…알려 주세요", "…되나요"), spaces removed.
# They are cut off the end of a question (repeatedly: "배달시킬수있어요" → "배달시킬"), so that what is asked
# decides the match and not how it is asked: with the frame left in, "예약 가능한가요" matches "주차 가능한가요"
# better than "예약은 어떻게 해요".
_FRAMES: Final = tuple(
    sorted(
        {
            *("가능한가요", "가능해요", "가능할까요", "가능합니까", "가능하죠", "가능한지", "가능"),
            *("되나요", "돼요", "되요", "될까요", "됩니까", "되죠", "되는지", "되는데요", "되는데", "돼", "되니"),
            *("있나요", "있어요", "있을까요", "있습니까", "있죠", "있는지", "있니", "있어", "있는데요", "있으세요"),
            *("없나요", "없어요", "없을까요", "없죠"),
            *("알려주세요", "알려주실래요", "알려주시겠어요", "알려줘요", "알려줘", "알고싶어요", "알고싶은데요"),
            *("어떻게되나요", "어떻게돼요", "어떻게되요", "어떻게되죠", "어떻게해요", "어떻게하면돼요", "어떻게하나요"),
            *("뭐예요", "뭐에요", "뭔가요", "뭐죠", "뭐야", "무엇인가요", "무엇이필요한가요", "뭐가필요해요"),
            *("인가요", "이에요", "이예요", "예요", "에요", "이죠", "입니까", "이야", "나요", "까요", "니까", "죠"),
            *("해도되나요", "해도돼요", "해도", "가도", "도", "수"),
            *("하고싶어요", "하고싶은데요", "싶어요", "싶은데요", "하려는데요", "하려고요", "하는데요", "는데요"),
            *("해주세요", "주세요", "주실래요", "주시겠어요", "줘요"),
            *("궁금해요", "궁금한데요", "궁금합니다", "궁금해서요", "문의드려요", "여쭤볼게요"),
            *("하나요", "해요", "하세요", "합니까", "하죠", "받아요", "받나요", "요", "좀"),
            # statements end the same way whatever they say: an answer's clause, a caller's "감사합니다"
            *("합니다", "습니다", "입니다", "니다", "드립니다", "드릴게요", "드려요", "세요", "어요", "아요"),
        },
        key=len,
        reverse=True,
    )
)
# Particles cut off the end of each remaining word ("주소가" → "주소"), when two syllables or more are left.
_PARTICLES: Final = tuple(
    sorted(
        "은 는 이 가 을 를 에 에서 에도 도 만 로 으로 랑 이랑 하고 까지 부터 의 좀 이나 나".split(),
        key=len,
        reverse=True,
    )
)


class KnowledgeError(ValueError):
    """The knowledge file cannot be used: unreadable, not YAML/JSON, or not the expected shape."""


@dataclass(frozen=True, slots=True)
class Entry:
    """Ways callers ask one question, and the answer the agent gives."""

    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True, slots=True)
class Knowledge:
    """A validated knowledge file."""

    entries: tuple[Entry, ...]
    facts: tuple[str, ...] = ()
    source: str = ""

    def texts(self) -> list[str]:
        """Every statement the agent may make: the answers and the facts."""
        return [e.answer for e in self.entries] + list(self.facts)


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved item: an entry (``index`` into ``entries``) or a fact (into ``facts``) and its score."""

    kind: HitKind
    index: int
    score: float
    text: str  # the entry's answer, or the fact
    question: str = ""  # the entry's question that matched best

    def to_dict(self) -> dict[str, Any]:
        """For the turn record and ``hanmadi ask --json``."""
        out: dict[str, Any] = {"index": self.index, "score": round(self.score, 3)}
        if self.kind != "entry":
            out["kind"] = self.kind
        if self.question:
            out["question"] = self.question
        return out


# --- the file ---------------------------------------------------------------------------------------------


def parse_knowledge(data: object, source: str = "") -> Knowledge:
    """Validate the decoded file; ``KnowledgeError`` names the first thing wrong and where."""

    def fail(where: str, what: str) -> KnowledgeError:
        return KnowledgeError(f"{source or 'knowledge'}: {where}: {what}")

    if not isinstance(data, dict):
        raise fail("top level", 'expected a mapping with "entries" (and optionally "facts")')
    unknown = sorted(set(data) - {"entries", "facts"})
    if unknown:
        raise fail("top level", f"unknown key(s) {', '.join(map(repr, unknown))}; expected entries, facts")
    raw_entries = data.get("entries", [])
    raw_facts = data.get("facts", [])
    if raw_entries is None:
        raw_entries = []
    if raw_facts is None:
        raw_facts = []
    if not isinstance(raw_entries, list):
        raise fail("entries", "must be a list")
    if not isinstance(raw_facts, list):
        raise fail("facts", "must be a list of sentences")
    entries: list[Entry] = []
    for i, raw in enumerate(raw_entries):
        where = f"entries[{i}]"
        if not isinstance(raw, dict):
            raise fail(where, 'must be a mapping with "questions" and "answer"')
        extra = sorted(set(raw) - {"questions", "answer"})
        if extra:
            raise fail(where, f"unknown key(s) {', '.join(map(repr, extra))}; expected questions, answer")
        questions = raw.get("questions")
        if isinstance(questions, str):
            questions = [questions]
        if not isinstance(questions, list) or not questions:
            raise fail(f"{where}.questions", "must be a non-empty list of questions")
        for j, q in enumerate(questions):
            if not isinstance(q, str) or not _words(q):
                raise fail(f"{where}.questions[{j}]", "must be a question with words in it")
        answer = raw.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise fail(f"{where}.answer", "must be a non-empty string")
        entries.append(Entry(tuple(" ".join(q.split()) for q in questions), " ".join(answer.split())))
    facts: list[str] = []
    for i, fact in enumerate(raw_facts):
        if not isinstance(fact, str) or not _words(fact):
            raise fail(f"facts[{i}]", "must be a sentence with words in it")
        facts.append(" ".join(fact.split()))
    if not entries and not facts:
        raise fail("top level", "no entries and no facts: nothing to answer from")
    return Knowledge(tuple(entries), tuple(facts), source)


def decode_knowledge(text: str, source: str = "") -> Knowledge:
    """Parse YAML (JSON is YAML too) and validate."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"{source or 'knowledge'}: not valid YAML/JSON: {exc}") from exc
    return parse_knowledge(data, source)


def load_knowledge(path: Path) -> Knowledge:
    """Read and validate a knowledge file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{path}: cannot read: {exc}") from exc
    return decode_knowledge(text, str(path))


def example_knowledge_path() -> Path:
    """The example restaurant file shipped in the repository's ``examples/`` (found from an editable install)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "restaurant-knowledge.yaml"
        if candidate.is_file():
            return candidate
    raise KnowledgeError("examples/restaurant-knowledge.yaml not found next to this installation: pass a file")


# --- Korean-aware features ----------------------------------------------------------------------------------

_HANGUL_BASE = 0xAC00
_HANGUL_LAST = 0xD7A3


def _jamo(text: str) -> str:
    """Hangul syllables → their lead/vowel/tail jamo (other characters kept)."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if _HANGUL_BASE <= code <= _HANGUL_LAST:
            offset = code - _HANGUL_BASE
            lead, rest = divmod(offset, 588)
            vowel, tail = divmod(rest, 28)
            out.append(chr(0x1100 + lead))
            out.append(chr(0x1161 + vowel))
            if tail:
                out.append(chr(0x11A7 + tail))
        else:
            out.append(ch)
    return "".join(out)


# How a syllable sounds, roughly, for a recogniser's or a typist's confusions: tense and aspirated consonants as
# the plain one (주차/주자, 카드/가드), ㅐ/ㅔ, ㅒ/ㅖ and ㅙ/ㅚ/ㅞ as one vowel (되요/돼요, 페이/패이), a final
# consonant as the one of seven it is pronounced as (받침 neutralisation: 있/읻, 밖/박).
_PLAIN_LEAD: Final = {1: 0, 15: 0, 4: 3, 16: 3, 8: 7, 17: 7, 10: 9, 13: 12, 14: 12}
_MERGED_VOWEL: Final = {1: 5, 3: 7, 10: 15, 11: 15}
_SPOKEN_TAIL: Final = {
    **dict.fromkeys((2, 3, 9, 24), 1),
    **dict.fromkeys((5, 6), 4),
    **dict.fromkeys((19, 20, 22, 23, 25, 27), 7),
    **dict.fromkeys((11, 12, 13, 15), 8),
    10: 16,
    **dict.fromkeys((14, 18, 26), 17),
}


def sound(text: str) -> str:
    """``text`` with each Hangul syllable replaced by its rough sound class (see above)."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if _HANGUL_BASE <= code <= _HANGUL_LAST:
            lead, rest = divmod(code - _HANGUL_BASE, 588)
            vowel, tail = divmod(rest, 28)
            lead = _PLAIN_LEAD.get(lead, lead)
            vowel = _MERGED_VOWEL.get(vowel, vowel)
            tail = _SPOKEN_TAIL.get(tail, tail)
            out.append(chr(_HANGUL_BASE + lead * 588 + vowel * 28 + tail))
        else:
            out.append(ch)
    return "".join(out)


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())


def normalize(text: str) -> str:
    """The text as retrieval sees it: lower-case letters, digits and Hangul, fillers dropped, spaces removed."""
    words = _words(text)
    kept = [w for w in words if not _FILLER_RE.match(w)]
    return "".join(kept or words)


def _strip_particle(word: str) -> str:
    for particle in _PARTICLES:
        if word.endswith(particle) and len(word) - len(particle) >= 2:
            return word[: -len(particle)]
    return word


def topic(text: str) -> str:
    """What a question asks about: particles off each word, the question's frame off its end, spaces removed.

    ``"주차는 가능한가요?"`` → ``"주차"``; ``"파스타는어떤것들이있나요"`` → ``"파스타는어떤것들"``. A text that is all
    frame keeps its words (``"예약하고 싶어요"`` → ``"예약"``; ``"있어요"`` → ``"있어요"``).
    """
    words = [w for w in _words(text) if not _FILLER_RE.match(w)] or _words(text)
    s = "".join(_strip_particle(w) for w in words)
    for _ in range(4):
        for frame in _FRAMES:
            if s.endswith(frame) and len(s) > len(frame):
                s = _strip_particle(s[: -len(frame)])
                break
        else:
            break
    return s


_CLAUSE_RE: Final = re.compile(r"[.?!,。]+")


def features(text: str) -> Counter[str]:
    """Weighted n-gram features of the topic of each clause of a text (see the module docstring)."""
    out: Counter[str] = Counter()
    for clause in _CLAUSE_RE.split(text):
        if _words(clause):
            _clause_features(topic(clause), out)
    return out


def _clause_features(s: str, out: Counter[str]) -> None:
    for n in _SYLLABLE_WEIGHTS:
        for i in range(len(s) - n + 1):
            out[f"{n}:{s[i : i + n]}"] += 1
    j = _jamo(s)
    for n in _JAMO_NS:
        for i in range(len(j) - n + 1):
            out[f"j:{j[i : i + n]}"] += 1
    heard = sound(s)
    for i in range(len(heard) - 1):
        out[f"s:{heard[i : i + 2]}"] += 1


def _group_weight(feature: str) -> float:
    head = feature[0]
    if head == "j":
        return _JAMO_WEIGHT
    if head == "s":
        return _SOUND_WEIGHT
    return _SYLLABLE_WEIGHTS[int(head)]


class KnowledgeIndex:
    """Retrieval over one ``Knowledge``: ``search(query)`` → the best entries and facts with their scores.

    A question is compared with the query by cosine. An answer or a fact is a statement, longer than a question,
    so it scores by how much of the query it covers (the share of the query's weight it contains), discounted.
    """

    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge
        # each document: (kind, item index, weight, matched question text or "" for a statement)
        docs: list[tuple[HitKind, int, float, str, Counter[str]]] = []
        for i, entry in enumerate(knowledge.entries):
            for q in entry.questions:
                docs.append(("entry", i, 1.0, q, features(q)))
            docs.append(("entry", i, ANSWER_WEIGHT, "", features(entry.answer)))
        for i, fact in enumerate(knowledge.facts):
            docs.append(("fact", i, FACT_WEIGHT, "", features(fact)))
        df: Counter[str] = Counter()
        for *_, feats in docs:
            df.update(feats.keys())
        n = len(docs)
        self._idf = {f: math.log(1 + (n - d + 0.5) / (d + 0.5)) * _group_weight(f) for f, d in df.items()}
        # idf of a feature no document has: as rare as can be (it still lengthens the query's vector)
        self._unseen_idf = math.log(1 + (n + 0.5) / 0.5)
        self._docs = [(kind, index, weight, question) for kind, index, weight, question, _ in docs]
        self._postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for d, (_, _, _, question, feats) in enumerate(docs):
            if question:
                for f, w in self._vector(feats).items():
                    self._postings[f].append((d, w))
            else:
                for f in feats:
                    self._postings[f].append((d, -1.0))  # a statement: presence only, see search()

    def _vector(self, feats: Counter[str]) -> dict[str, float]:
        weights: dict[str, float] = {}
        for f, tf in feats.items():
            idf = self._idf.get(f)
            if idf is None:
                idf = self._unseen_idf * _group_weight(f)
            weights[f] = (1 + math.log(tf)) * idf
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {f: w / norm for f, w in weights.items()}

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The ``k`` best items for ``query``, best first, each entry or fact at most once (score 0..1)."""
        vector = self._vector(features(query))
        scores: dict[int, float] = defaultdict(float)
        for f, w in vector.items():
            for d, dw in self._postings.get(f, ()):
                scores[d] += w * (w if dw < 0 else dw)  # coverage for statements, cosine for questions
        best: dict[tuple[HitKind, int], tuple[float, str]] = {}
        for d, similarity in scores.items():
            kind, index, weight, question = self._docs[d]
            score = similarity * weight
            key = (kind, index)
            if key not in best or score > best[key][0]:
                best[key] = (score, question or best.get(key, (0.0, ""))[1])
        ranked = sorted(best.items(), key=lambda item: item[1][0], reverse=True)[:k]
        hits = []
        for (kind, index), (score, question) in ranked:
            if kind == "entry":
                entry = self.knowledge.entries[index]
                hits.append(Hit(kind, index, score, entry.answer, question or entry.questions[0]))
            else:
                hits.append(Hit(kind, index, score, self.knowledge.facts[index]))
        return hits


# --- the fact guard ----------------------------------------------------------------------------------------

_SINO_DIGITS: Final = {
    "영": 0,
    "공": 0,
    "일": 1,
    "이": 2,
    "삼": 3,
    "사": 4,
    "오": 5,
    "육": 6,
    "칠": 7,
    "팔": 8,
    "구": 9,
}
_SINO_UNITS: Final = {"십": 10, "백": 100, "천": 1000}
_NATIVE_TENS: Final = {"열": 10, "스물": 20, "스무": 20, "서른": 30, "마흔": 40, "쉰": 50}
_NATIVE_ONES: Final = {
    "한": 1,
    "하나": 1,
    "두": 2,
    "둘": 2,
    "세": 3,
    "셋": 3,
    "석": 3,
    "네": 4,
    "넷": 4,
    "다섯": 5,
    "여섯": 6,
    "일곱": 7,
    "여덟": 8,
    "아홉": 9,
}
# Counters after which a number is a claim: time, money, people, floors, distances, amounts.
_COUNTERS: Final = (
    "시간",
    "시",
    "분",
    "초",
    "원",
    "명",
    "층",
    "번",
    "개",
    "일",
    "월",
    "년",
    "주",
    "살",
    "잔",
    "병",
    "석",
    "인분",
    "퍼센트",
    "프로",
    "%",
    "km",
    "킬로",
    "미터",
    "m",
    "호선",
    "출구",
    "가지",
)
_COUNTER_ALT: Final = "|".join(sorted(map(re.escape, _COUNTERS), key=len, reverse=True))
_NATIVE_ALT: Final = "|".join(sorted([*_NATIVE_ONES, *_NATIVE_TENS], key=len, reverse=True))
_UNIT: Final = r"(" + _COUNTER_ALT + r"|[a-z]+)?"
_DIGITS_RE: Final = re.compile(r"(\d+(?:[,.]\d+)*)\s*(만)?\s*" + _UNIT, re.IGNORECASE)
_SINO_RE: Final = re.compile(
    r"(?<![가-힣])([일이삼사오육칠팔구십백천만](?:\s?[일이삼사오육칠팔구십백천만])*)\s*(" + _COUNTER_ALT + ")"
)
_NATIVE_RE: Final = re.compile(
    r"(?<![가-힣])((?:" + "|".join(_NATIVE_TENS) + r")?\s*(?:" + _NATIVE_ALT + r")?)\s*(" + _COUNTER_ALT + ")"
)
_SAME_UNIT: Final = {"퍼센트": "%", "프로": "%", "킬로": "km", "미터": "m"}
_PLACE_RE: Final = re.compile(
    r"[가-힣A-Za-z0-9]{1,12}(?:역|빌딩|타워|센터|백화점|시장|공원|대학교|병원|마트|호텔|터미널)"
)
_NOT_PLACES: Final = frozenset(
    {"지역", "영역", "구역", "무역", "역", "전역", "주차역", "센터", "병원", "마트", "호텔", "시장"}
)


def _sino_value(word: str) -> int | None:
    total, section, digit = 0, 0, None
    for ch in word.replace(" ", ""):
        if ch in _SINO_DIGITS:
            if digit is not None:
                return None  # two digits in a row: not a number word (이사, 오일…)
            digit = _SINO_DIGITS[ch]
        elif ch in _SINO_UNITS:
            section += (digit if digit is not None else 1) * _SINO_UNITS[ch]
            digit = None
        elif ch == "만":
            total += (section + (digit or 0) or 1) * 10_000
            section, digit = 0, None
    return total + section + (digit or 0)


def _native_value(word: str) -> int | None:
    word = word.replace(" ", "")
    if not word:
        return None
    value = 0
    for tens, v in _NATIVE_TENS.items():
        if word.startswith(tens):
            value, word = v, word[len(tens) :]
            break
    if word:
        if word not in _NATIVE_ONES:
            return None
        value += _NATIVE_ONES[word]
    return value or None


Claim = tuple[int | float, str]


def numbers_in(text: str) -> set[Claim]:
    """The numbers a sentence states, each with its counter (``(2, "시간")``, ``(18000, "원")``, ``(3, "")``):
    digits (``18,000``, ``2만``) and Korean number words before a counter (``두 시간``, ``만 오천 원``)."""
    found: set[Claim] = set()

    def unit(raw: str | None) -> str:
        raw = (raw or "").lower()
        return _SAME_UNIT.get(raw, raw)

    for m in _DIGITS_RE.finditer(text):
        raw = m.group(1).replace(",", "")
        try:
            value: int | float = float(raw) if "." in raw else int(raw)
        except ValueError:
            continue
        found.add((value * 10_000 if m.group(2) else value, unit(m.group(3))))
    for m in _SINO_RE.finditer(text):
        if len(m.group(1)) == 1 and m.end(1) == m.start(2):
            continue  # "오시면", "이분": a one-syllable number word glued to its counter is too often a word
        sino = _sino_value(m.group(1))
        if sino is not None:
            found.add((sino, unit(m.group(2))))
    for m in _NATIVE_RE.finditer(text):
        native = _native_value(m.group(1))
        if native is not None:
            found.add((native, unit(m.group(2))))
    return found


def places_in(text: str) -> set[str]:
    """Place names a sentence states (``역삼역``, ``한마디빌딩``), spaces removed."""
    return {m.group() for m in _PLACE_RE.finditer(text.replace(" ", "")) if m.group() not in _NOT_PLACES}


def overlap(sentence: str, source: str) -> float:
    """The share of ``sentence``'s syllable pairs (spaces and punctuation ignored) found in ``source``."""
    said = "".join(_words(sentence))
    pairs = [said[i : i + 2] for i in range(len(said) - 1)]
    if not pairs:
        return 1.0
    known = "".join(_words(source))
    return sum(pair in known for pair in pairs) / len(pairs)


class FactGuard:
    """Knows which numbers and places the knowledge states; finds the ones a sentence adds."""

    def __init__(self, knowledge: Knowledge) -> None:
        texts = knowledge.texts() + [q for e in knowledge.entries for q in e.questions]
        self._numbers: set[Claim] = set()
        for text in texts:
            self._numbers |= numbers_in(text)
        self._compact = "".join(t.replace(" ", "") for t in texts)

    def unsupported(self, sentence: str, caller_said: str = "", *, from_knowledge: bool = True) -> list[str]:
        """The claims of ``sentence`` found neither in the knowledge nor in what the caller said.

        A number with a counter must appear with that counter (``10명`` is not supported by ``10%``); a bare
        number by its value. ``from_knowledge=False``: only the caller's words support a claim (a sentence said
        without any knowledge behind it must not borrow the knowledge's numbers for something else).
        """
        allowed = (self._numbers if from_knowledge else set()) | numbers_in(caller_said)
        values = {value for value, _ in allowed}
        caller_compact = caller_said.replace(" ", "")
        bad = [
            f"{value:g}{unit}"
            for value, unit in sorted(numbers_in(sentence), key=lambda c: (float(c[0]), c[1]))
            if ((value, unit) not in allowed if unit else value not in values)
        ]
        known = self._compact if from_knowledge else ""
        bad += sorted(p for p in places_in(sentence) if p not in known and p not in caller_compact)
        return bad


# --- the process's knowledge, reloaded --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedKnowledge:
    """One version of the knowledge with what is built from it."""

    knowledge: Knowledge
    index: KnowledgeIndex
    guard: FactGuard
    digest: str

    @classmethod
    def build(cls, knowledge: Knowledge, digest: str = "") -> LoadedKnowledge:
        return cls(knowledge, KnowledgeIndex(knowledge), FactGuard(knowledge), digest)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class KnowledgeSource:
    """The knowledge a process answers from; ``current`` is swapped whole on a successful reload."""

    def __init__(self, path: Path | None, loaded: LoadedKnowledge) -> None:
        self.path = path
        self.current = loaded
        self._stamp = self._file_stamp()
        self.sighup_installed = False  # while watching() in the main thread
        metrics.KNOWLEDGE_ITEMS.set(len(loaded.knowledge.entries) + len(loaded.knowledge.facts))

    @classmethod
    def from_file(cls, path: Path) -> KnowledgeSource:
        """Load and validate ``path`` (``KnowledgeError`` if it cannot be used)."""
        data = cls._read(path)
        knowledge = decode_knowledge(data.decode("utf-8", errors="strict"), str(path))
        log.info("knowledge: %s (%d entries, %d facts)", path, len(knowledge.entries), len(knowledge.facts))
        return cls(path, LoadedKnowledge.build(knowledge, _digest(data)))

    @classmethod
    def from_knowledge(cls, knowledge: Knowledge) -> KnowledgeSource:
        """A fixed knowledge, not backed by a file (tests, benchmarks)."""
        return cls(None, LoadedKnowledge.build(knowledge))

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise KnowledgeError(f"{path}: cannot read: {exc}") from exc

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self, reason: str = "manual") -> bool:
        """Read the file again. True if new knowledge is in use; a bad file keeps the old one (logged, counted)."""
        if self.path is None:
            return False
        self._stamp = self._file_stamp()
        try:
            data = self._read(self.path)
            if _digest(data) == self.current.digest:
                return False
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise KnowledgeError(f"{self.path}: not UTF-8: {exc}") from exc
            knowledge = decode_knowledge(text, str(self.path))
        except KnowledgeError as exc:
            metrics.KNOWLEDGE_RELOADS.labels(outcome="error").inc()
            log.warning("knowledge reload (%s) failed, keeping the previous knowledge: %s", reason, exc)
            return False
        self.current = LoadedKnowledge.build(knowledge, _digest(data))
        metrics.KNOWLEDGE_RELOADS.labels(outcome="ok").inc()
        metrics.KNOWLEDGE_ITEMS.set(len(knowledge.entries) + len(knowledge.facts))
        log.info(
            "knowledge reloaded (%s): %s (%d entries, %d facts)",
            reason,
            self.path,
            len(knowledge.entries),
            len(knowledge.facts),
        )
        return True

    def changed_on_disk(self) -> bool:
        """The file's modification time or size differs from the last read."""
        return self.path is not None and self._file_stamp() != self._stamp

    @contextlib.asynccontextmanager
    async def watching(self, poll_s: float) -> AsyncIterator[KnowledgeSource]:
        """While inside: reload on SIGHUP (main thread only) and when the file changes (checked every ``poll_s``)."""
        if self.path is None:
            yield self
            return
        loop = asyncio.get_running_loop()
        hup = asyncio.Event()
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is not None:
            try:
                loop.add_signal_handler(sighup, hup.set)
                self.sighup_installed = True
            except (RuntimeError, ValueError, NotImplementedError):  # not the main thread, or no signals here
                log.debug("knowledge: SIGHUP reload not available in this thread; file changes are still watched")
        try:
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(self._watch(hup, poll_s), name="knowledge-watch")
                try:
                    yield self
                finally:
                    task.cancel()
        finally:
            if self.sighup_installed and sighup is not None:
                loop.remove_signal_handler(sighup)
                self.sighup_installed = False

    async def _watch(self, hup: asyncio.Event, poll_s: float) -> None:
        while True:
            try:
                if poll_s > 0:
                    async with asyncio.timeout(poll_s):
                        await hup.wait()
                else:
                    await hup.wait()
            except TimeoutError:
                pass
            if hup.is_set():
                hup.clear()
                await asyncio.to_thread(self.reload, "SIGHUP")
            elif self.changed_on_disk():
                await asyncio.to_thread(self.reload, "file changed")


@contextlib.asynccontextmanager
async def knowledge_watch(source: KnowledgeSource | None, poll_s: float) -> AsyncIterator[None]:
    """``source.watching(poll_s)`` when there is a knowledge file; nothing otherwise."""
    if source is None:
        yield
        return
    async with source.watching(poll_s):
        yield


def source_from_settings(path: Path | None) -> KnowledgeSource | None:
    """The knowledge of ``HANMADI_KNOWLEDGE_FILE`` (``None`` when unset); ``KnowledgeError`` if it is unusable."""
    return KnowledgeSource.from_file(path) if path is not None else None
