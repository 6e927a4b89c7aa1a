"""A deployment's pronunciation lexicon: written form → spoken form, applied before the speakable rules.

Brand names, menu items, the agent's own name: what no rule can guess. A lexicon file is either

* **TSV**: one ``written<TAB>spoken`` pair a line, an optional third column ``ignore_case`` (or ``i``) for a
  case-insensitive entry; blank lines and lines starting with ``#`` are skipped; or
* **JSON**: ``{"written": "spoken", …}``, or ``{"case_sensitive": false, "entries": {…}}`` to make every entry
  case-insensitive, or ``{"entries": [{"written": …, "spoken": …, "case_sensitive": false}, …]}``.

Entries match whole words only: not inside a longer word of letters or digits, except that a Korean particle
or ending may follow a word (``한마디는``, ``KTX로``, ``Gemma입니다``). The longest entry wins where two overlap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lexicon", "LexiconEntry", "LexiconError"]

# Hangul syllables that begin a particle or a copula ending right after a noun.
_PARTICLE_STARTS = "은는이가을를에께로으와과랑도만의요입예처보까부하한님야죠였일라"


class LexiconError(ValueError):
    """A lexicon file that cannot be used; the message names the file and, where it can, the line."""


@dataclass(frozen=True, slots=True)
class LexiconEntry:
    """One written form and how to say it."""

    written: str
    spoken: str
    case_sensitive: bool = True


def _is_hangul(ch: str) -> bool:
    return "가" <= ch <= "힣"


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _ends_word(written: str, following: str) -> bool:
    """May ``following`` (one character or "") come right after the entry ``written``?"""
    if not following or not _is_word(following):
        return True
    last = written[-1]
    if _is_hangul(last):
        return following in _PARTICLE_STARTS  # a particle may follow, not another syllable
    if _is_word(last):
        return _is_hangul(following)  # Hangul after a Latin word is a particle (KTX로)
    return True


class Lexicon:
    """Written → spoken replacements of whole words in one pass: a precompiled scan for the positions where an entry
    may start, then dictionary lookups, longest entry first (fast with thousands of entries)."""

    def __init__(self, entries: Iterable[LexiconEntry]) -> None:
        by_written: dict[tuple[str, bool], LexiconEntry] = {}
        for entry in entries:
            if not entry.written.strip():
                raise LexiconError("a lexicon entry has an empty written form")
            by_written[(entry.written, entry.case_sensitive)] = entry
        self.entries: tuple[LexiconEntry, ...] = tuple(by_written.values())
        self._exact: dict[str, str] = {}
        self._folded: dict[str, str] = {}
        lengths: dict[str, set[int]] = {}
        for entry in self.entries:
            first = entry.written[0]
            firsts = {first}
            if entry.case_sensitive:
                self._exact[entry.written] = entry.spoken
            else:
                self._folded.setdefault(entry.written.casefold(), entry.spoken)
                firsts |= {first.lower(), first.upper()}
            for ch in firsts:
                lengths.setdefault(ch, set()).add(len(entry.written))
        self._lengths = {ch: sorted(ls, reverse=True) for ch, ls in lengths.items()}
        word_firsts = "".join(re.escape(ch) for ch in lengths if _is_word(ch))
        other_firsts = "".join(re.escape(ch) for ch in lengths if not _is_word(ch))
        starts = ([rf"(?<!\w)[{word_firsts}]"] if word_firsts else []) + ([f"[{other_firsts}]"] if other_firsts else [])
        self._starts = re.compile("|".join(starts)) if starts else None

    @classmethod
    def from_mapping(cls, mapping: dict[str, str], case_sensitive: bool = True) -> Lexicon:
        """A lexicon from a ``{written: spoken}`` dict."""
        return cls(LexiconEntry(w, s, case_sensitive) for w, s in mapping.items())

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        """Read a TSV or JSON lexicon file (JSON if it ends in ``.json`` or starts with ``{``).

        Raises :class:`LexiconError` naming the file (and the line) for anything that is not a usable lexicon.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise LexiconError(f"lexicon {path}: cannot read it ({exc})") from exc
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            return cls(_json_entries(path, text))
        return cls(_tsv_entries(path, text))

    def __len__(self) -> int:
        return len(self.entries)

    def apply(self, text: str) -> str:
        """Replace every whole-word written form in ``text`` by its spoken form."""
        if self._starts is None:
            return text
        out: list[str] = []
        last = 0
        pos = 0
        search = self._starts.search
        while (m := search(text, pos)) is not None:
            i = m.start()
            hit = self._entry_at(text, i)
            if hit is None:
                pos = i + 1
                continue
            end, spoken = hit
            out.append(text[last:i])
            out.append(spoken)
            last = pos = end
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)

    def _entry_at(self, text: str, i: int) -> tuple[int, str] | None:
        for length in self._lengths[text[i]]:
            end = i + length
            if end > len(text):
                continue
            word = text[i:end]
            spoken = self._exact.get(word)
            if spoken is None and self._folded:
                spoken = self._folded.get(word.casefold())
            if spoken is not None and _ends_word(word, text[end : end + 1]):
                return end, spoken
        return None


def _tsv_entries(path: Path, text: str) -> list[LexiconEntry]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        columns = line.rstrip("\r\n").split("\t")
        if len(columns) not in (2, 3) or not columns[0].strip() or not columns[1].strip():
            raise LexiconError(
                f"lexicon {path} line {number}: expected 'written<TAB>spoken[<TAB>ignore_case]', got {line!r}"
            )
        flag = columns[2].strip().lower() if len(columns) == 3 else ""
        if flag not in ("", "i", "ignore_case", "case_sensitive"):
            raise LexiconError(f"lexicon {path} line {number}: third column must be 'ignore_case', got {flag!r}")
        entries.append(LexiconEntry(columns[0].strip(), columns[1].strip(), flag not in ("i", "ignore_case")))
    if not entries:
        raise LexiconError(f"lexicon {path}: no entries")
    return entries


def _json_entries(path: Path, text: str) -> list[LexiconEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LexiconError(f"lexicon {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise LexiconError(f"lexicon {path}: expected a JSON object")
    default_case = True
    if "entries" in data:
        default_case = data.get("case_sensitive", True)
        if not isinstance(default_case, bool):
            raise LexiconError(f"lexicon {path}: 'case_sensitive' must be true or false")
        data = data["entries"]
    entries: list[LexiconEntry] = []
    if isinstance(data, dict):
        for written, spoken in data.items():
            if not isinstance(spoken, str) or not spoken.strip() or not written.strip():
                raise LexiconError(f"lexicon {path}: entry {written!r} needs a non-empty spoken string")
            entries.append(LexiconEntry(written.strip(), spoken.strip(), default_case))
    elif isinstance(data, list):
        for k, item in enumerate(data):
            written = item.get("written") if isinstance(item, dict) else None
            spoken = item.get("spoken") if isinstance(item, dict) else None
            case = item.get("case_sensitive", default_case) if isinstance(item, dict) else None
            if not isinstance(written, str) or not isinstance(spoken, str) or not isinstance(case, bool):
                raise LexiconError(
                    f"lexicon {path}: entry {k} must be {{'written': str, 'spoken': str, 'case_sensitive': bool}}"
                )
            if not written.strip() or not spoken.strip():
                raise LexiconError(f"lexicon {path}: entry {k} has an empty written or spoken form")
            entries.append(LexiconEntry(written.strip(), spoken.strip(), case))
    else:
        raise LexiconError(f"lexicon {path}: 'entries' must be an object or a list")
    if not entries:
        raise LexiconError(f"lexicon {path}: no entries")
    return entries
