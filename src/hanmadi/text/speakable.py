"""Written → spoken text: what a TTS should say for what the LLM wrote (Korean first, English).

An LLM writes ``내일 오후 3시 30분에 4명, 총 12,500원입니다.``; a TTS that reads digits one way says nonsense on the
phone. :func:`speakable` rewrites numbers, dates, times, money, phone numbers, units, acronyms and symbols into the
words a person would say — ``내일 오후 세 시 삼십 분에 네 명, 총 만 이천오백 원입니다.`` — in microseconds, between
the segmenter and the TTS. The written sentence stays what the timeline, the records and the agent's history keep.

Korean rules, in the order they are tried at each position:

* phone numbers (``010-1234-5678``, ``02-123-4567``, ``+82 10 1234 5678``, ``1588-1234``, ``01012345678``) and
  other hyphenated digit groups (account numbers): digit by digit, ``0`` as 공, a space between groups;
* dates ``2024-03-15``, ``2024. 3. 15.``, ``2024/03/15``, ``3/15`` (and a weekday ``(금)`` → 금요일);
* times ``15:30`` (오후 세 시 삼십 분), ``3:00``, ``3pm``, ``PM 3:00``; ratios ``3:1`` (삼 대 일);
* money ``₩15,000``, ``$20``, ``$3.50``, ``€``, ``£``, ``¥``; Korean written units ``3.5만 원``, ``1억 2천만 원``;
* ``3·1절`` (삼일절), ``#3`` (삼 번), ``1+1`` (원 플러스 원), ranges ``3~5명`` (세 명에서 다섯 명);
* a number and its counter: native numbers (한, 두, 세, 네, 스무…) for 1–99 before native counters (시, 시간, 명,
  개, 살, 마리, 잔, 병, 권, 대, 벌, 켤레, 그릇, 번째, 달…), Sino-Korean before the others (분, 초, 원, 년, 월, 일,
  층, 호, 호선, 인분, 점, 도, 세, %…) and for 100 and over; 6월 → 유월, 10월 → 시월; 만/억/조 grouping with no
  일 before 만 (10,000 → 만); decimals (3.14 → 삼 점 일사); units (km, kg, g, L, ml, cm, °C…, 100km/h → 시속 백
  킬로미터); negative temperatures (-5도 → 영하 오 도); B1층 → 지하 일 층;
* numbers that are identifiers (a leading 0, five or more digits without commas, after 번호/코드/자리/계좌) and
  numbers too long to be quantities: digit by digit; digits of other scripts (３, ٣) are read like ASCII ones;
* uppercase acronyms with Korean letter names (KTX → 케이티엑스, R&D → 알앤디), letter-digit codes (MP3 →
  엠피쓰리, KF94 → 케이에프구십사); symbols read aloud (&, +, #, @, ``/`` between words, ``~`` in ranges,
  weekday ranges 화~금 → 화요일에서 금요일).

URLs, e-mail addresses, domain names and identifiers with ``_`` (code) are left exactly as written; so is anything
no rule can read sensibly — nothing is dropped. The result is stable: ``speakable(speakable(t)) == speakable(t)``.
English (``lang="en"``) gets the English equivalents through ``num2words``. Other languages get the lexicon only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache, partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hanmadi.text.lexicon import Lexicon

__all__ = ["native_korean", "sino_korean", "speakable", "speaker"]


# --- Korean numbers ---------------------------------------------------------------------------------------------

_SINO_DIGITS = "영일이삼사오육칠팔구"
_PHONE_DIGITS = "공일이삼사오육칠팔구"
_ENGLISH_DIGITS = ("제로", "원", "투", "쓰리", "포", "파이브", "식스", "세븐", "에잇", "나인")
_NATIVE_ONES = ("", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉")
_NATIVE_ONES_ATTRIBUTIVE = ("", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉")
_NATIVE_TENS = ("", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔")
_BIG_UNITS = ("", "만", "억", "조", "경")


@lru_cache(maxsize=10000)
def _four_digits(g: int) -> str:
    out = []
    for unit, d in zip(("천", "백", "십", ""), f"{g:04d}", strict=True):
        digit = ord(d) - 48
        if digit:
            out.append(unit if (unit and digit == 1) else _SINO_DIGITS[digit] + unit)
    return "".join(out)


def sino_korean(n: int) -> str:
    """Sino-Korean reading of ``n`` ≥ 0, grouped by 만/억/조/경: 12500 → ``만 이천오백``, 10000 → ``만``."""
    if n == 0:
        return "영"
    if n >= 10**20:
        return _digit_by_digit(str(n), _SINO_DIGITS)
    parts = []
    i = 0
    while n:
        n, g = divmod(n, 10000)
        if g:
            parts.append("만" if (i == 1 and g == 1) else _four_digits(g) + _BIG_UNITS[i])
        i += 1
    return " ".join(reversed(parts))


def native_korean(n: int, attributive: bool = True) -> str:
    """Native Korean reading of 1 ≤ ``n`` ≤ 99; ``attributive`` gives the form before a counter (한, 두, 스무)."""
    if not 1 <= n <= 99:
        raise ValueError(f"native Korean numbers go from 1 to 99, got {n}")
    tens, ones = divmod(n, 10)
    if attributive and n == 20:
        return "스무"
    return _NATIVE_TENS[tens] + (_NATIVE_ONES_ATTRIBUTIVE if attributive else _NATIVE_ONES)[ones]


def _digit_by_digit(digits: str, names: str) -> str:
    return "".join(names[ord(d) - 48] for d in digits if "0" <= d <= "9")


def _sino_decimal(integer: str, fraction: str = "") -> str:
    """``3`` ``.14`` → 삼 점 일사 (the fraction digit by digit)."""
    whole = sino_korean(int(integer.replace(",", "")))
    if not fraction:
        return whole
    return f"{whole} 점 {_digit_by_digit(fraction, _SINO_DIGITS)}"


def _any_digits(text: str) -> str:
    """Whatever digits a rule could not place: each run read as a Sino-Korean number."""
    return _DIGIT_RUN.sub(lambda m: _sino_decimal(m.group()), text)


_DIGIT_RUN = re.compile(r"\d+")
_LONG_DIGIT_RUN = re.compile(r"\d{21,}")


# --- counters and units -----------------------------------------------------------------------------------------

_NATIVE, _SINO, _UNIT = 0, 1, 2
_COUNTERS: dict[str, tuple[int, str]] = {}
for _word in (
    "시 시간 명 개 살 마리 잔 병 권 대 벌 켤레 그릇 번째 번 달 장 곳 가지 군데 통 송이 채 척 알 줄 쌍 판 접시 "
    "봉지 박스 바퀴 걸음 사람 세트 분께 분이서 분들 자루 포기 그루 끼 자리"
).split():
    _COUNTERS[_word] = (_NATIVE, _word)
for _word in (
    "분 초 원 년 월 일 층 호선 호 인분 인 점 도 퍼센트 세 세대 개월 주 주일 주년 박 회 회차 차 등 위 배 학년 동 "
    "번지 평 기 부 편 쪽 페이지 단계 등급 달러 유로 엔 위안 파운드 센트 킬로 미터 그램 리터 시즌 년대 원어치 밀리"
).split():
    _COUNTERS[_word] = (_SINO, _word)
_UNITS = {
    "km/h": "킬로미터",
    "km²": "제곱킬로미터",
    "m²": "제곱미터",
    "m³": "세제곱미터",
    "km": "킬로미터",
    "kg": "킬로그램",
    "mg": "밀리그램",
    "g": "그램",
    "L": "리터",
    "l": "리터",
    "ml": "밀리리터",
    "mL": "밀리리터",
    "cm": "센티미터",
    "mm": "밀리미터",
    "m": "미터",
    "kcal": "킬로칼로리",
    "cc": "시시",
    "GB": "기가바이트",
    "MB": "메가바이트",
    "TB": "테라바이트",
    "KB": "킬로바이트",
    "kWh": "킬로와트시",
    "kW": "킬로와트",
    "W": "와트",
    "V": "볼트",
    "Hz": "헤르츠",
    "GHz": "기가헤르츠",
    "mAh": "밀리암페어시",
}
_SYMBOL_UNITS = {
    "%p": "퍼센트포인트",
    "%": "퍼센트",
    "°C": "도",
    "℃": "도",
    "°F": "도",
    "℉": "도",
    "°": "도",
    "㎞": "킬로미터",
    "㎏": "킬로그램",
    "㎎": "밀리그램",
    "㎖": "밀리리터",
    "㎜": "밀리미터",
    "㎝": "센티미터",
    "㎡": "제곱미터",
}
for _word, _spoken in (_UNITS | _SYMBOL_UNITS).items():
    _COUNTERS[_word] = (_UNIT, _spoken)
_FAHRENHEIT = frozenset({"°F", "℉"})


# By first character, the lengths of the counters that start with it, longest first.
_COUNTER_LENGTHS: dict[str, tuple[int, ...]] = {
    first: tuple(sorted({len(w) for w in _COUNTERS if w[0] == first}, reverse=True))
    for first in {w[0] for w in _COUNTERS}
}


def _counter_at(text: str, i: int) -> tuple[str | None, int]:
    """The counter or unit right after a number ending at ``i`` (one space allowed): ``(counter, end)``.

    A dictionary lookup, longest first (시간 before 시, 개월 before 개); an ASCII unit must end its word (``5 m``,
    not the ``m`` of ``5 min``).
    """
    j = i + 1 if text[i : i + 1] == " " else i
    for length in _COUNTER_LENGTHS.get(text[j : j + 1], ()):
        word = text[j : j + length]
        if word in _COUNTERS:
            last = word[-1]
            if last.isascii() and last.isalpha():
                following = text[j + length : j + length + 1]
                if following.isascii() and following.isalpha():
                    continue
            return word, j + length
    return None, i


# After these a 번 is a number (3번 출구, 1번을 누르세요), not a count of times (3번 시도).
_BEON_SINO_AFTER = re.compile(
    r"\s?(?:출구|버스|게이트|창구|홈|승강장|테이블|방|좌석|자리|채널|메뉴|버튼|트랙|라인|을|를|으로|입니다|이에요|이요|고객|손님|환자)"
)
# An hour of 13–23 is said as 오후 + the 12-hour clock unless a time of day is already said.
_TIME_OF_DAY = ("오전", "오후", "아침", "저녁", "밤", "새벽", "낮", "점심")
# A number right after these is an identifier, read digit by digit (카드 끝자리 1234, 계좌 1002…).
_IDENTIFIER_CONTEXT = ("번호", "코드", "자리", "계좌")
_SERVICE_NUMBERS = frozenset({"110", "111", "112", "113", "114", "118", "119", "120", "122", "1330", "1345", "1366"})


def _month(n: int) -> str:
    if n == 6:
        return "유월"
    if n == 10:
        return "시월"
    return sino_korean(n) + "월"


def _hour(n: int, before: str) -> str:
    if 1 <= n <= 12:
        return native_korean(n) + " 시"
    if 13 <= n <= 23:
        said = before.rstrip()[-2:]
        prefix = "" if any(said.endswith(w) for w in _TIME_OF_DAY) else "오후 "
        return f"{prefix}{native_korean(n - 12)} 시"
    return sino_korean(n) + " 시"


def _count(integer: str, fraction: str, counter: str | None, text: str, start: int, end: int) -> str:
    """A number with its counter (or none): which number system, which spacing."""
    if counter is None:
        digits = integer
        if (
            not fraction
            and "," not in digits
            and (
                (len(digits) > 1 and digits[0] == "0")
                or len(digits) >= 5
                or digits in _SERVICE_NUMBERS
                or any(w in text[max(0, start - 6) : start] for w in _IDENTIFIER_CONTEXT)
            )
        ):
            return _digit_by_digit(digits, _PHONE_DIGITS)
        return _sino_decimal(integer, fraction)
    kind, spoken = _COUNTERS[counter]
    n = int(integer.replace(",", ""))
    if kind == _UNIT and (counter in _FAHRENHEIT or counter == "km/h"):
        before = text[:start].rstrip()
        prefix = "화씨" if counter in _FAHRENHEIT else "시속"
        prefix = "" if before.endswith(prefix) else prefix + " "
        return f"{prefix}{_sino_decimal(integer, fraction)} {spoken}"  # 화씨 팔십 도, 시속 백 킬로미터
    if fraction:
        return f"{_sino_decimal(integer, fraction)} {spoken}"
    if counter == "월":
        return _month(n)
    if counter == "시":
        return _hour(n, text[:start])
    if counter == "번":
        kind = _SINO if _BEON_SINO_AFTER.match(text, end) else _NATIVE
    elif counter == "대" and n % 10 == 0:
        kind = _SINO  # 20대: in their twenties
    if kind == _NATIVE and 1 <= n <= 99:
        return f"{native_korean(n)} {spoken}"
    return f"{sino_korean(n)} {spoken}"


# --- the Korean number pass ---------------------------------------------------------------------------------------

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)"
_PART = rf"(?:{_NUM}(?:\.\d+)?(?:천|백)?(?:조|억|만)|\d+(?:\.\d+)?(?:천|백))"
# The alternatives in three groups, each behind a cheap lookahead, so that a position is rejected (or a plain
# number like the 3 of 3시 recognised) without trying every alternative: symbol-led, then digit runs followed by
# a separator, a letter or a Korean written unit, then the plain number.
_KO_SYMBOL_LED = (
    r"(?P<intl>\+\d{1,3}(?:[ .-]?(?:\(0\))?[ .-]?\d{1,4}){2,3}(?!\d))",
    r"(?P<area>\(0\d{1,2}\)\s?\d{3,4}[ .-]\d{4}(?![\d-]))",
    r"(?P<money>(?P<cur>[₩$€£¥])\s?(?P<cur_n>" + _NUM + r")(?P<cur_f>\.\d+)?"
    r"(?:\s?(?P<cur_u>조|억|만|천|[KMB](?![A-Za-z])))?(?:\s?원)?)",
    r"(?P<hash>#(?P<hash_n>\d+))",
    r"(?P<pm_first>(?<![A-Za-z])(?P<pf>[AP])M\s?(?P<pf_h>\d{1,2})(?::(?P<pf_m>[0-5]\d))?(?![\d:]))",
    r"(?P<code>(?<![A-Za-z0-9])(?:[A-Z]+\d+|\d+[A-Z]+)[A-Z\d]*(?![A-Za-z0-9]))",
)
_KO_DIGIT_LED = (
    r"(?P<phone>(?<![\d-])0\d{1,2}[ .-]\d{3,4}[ .-]\d{4}(?![\d-]))",
    r"(?P<mobile>(?<!\d)01[016789]\d{7,8}(?!\d))",
    r"(?P<service>(?<![\d-])1[5-9]\d{2}-\d{4}(?![\d-]))",
    r"(?P<date>(?<!\d)(?P<y>\d{4})(?P<sep>-|/|\.\s?)(?P<mo>\d{1,2})(?P=sep)(?P<d>\d{1,2})(?![\d])"
    r"(?:\s?\((?P<wd>[월화수목금토일])\))?)",
    r"(?P<ym>(?<!\d)(?P<ym_y>\d{4})[-/](?P<ym_m>0[1-9]|1[0-2])(?![\d/-]))",
    r"(?P<dashed>(?<![\d-])\d+(?:-\d+){2,}(?![\d-]))",
    r"(?P<md>(?<![\d/.])(?P<md_m>\d{1,2})/(?P<md_d>\d{1,2})(?![\d/])(?:\s?\((?P<md_wd>[월화수목금토일])\))?)",
    r"(?P<ampm>(?<![\d:])(?P<ap_h>\d{1,2})(?::(?P<ap_m>\d{2}))?\s?(?P<ap>[AaPp])\.?[Mm]\.?(?![A-Za-z]))",
    r"(?P<time>(?<![\d:])(?P<t_h>\d{1,2}):(?P<t_m>\d{2})(?::(?P<t_s>\d{2}))?(?![\d:]))",
    r"(?P<ratio>(?<![\d:])\d+(?::\d+)+(?![\d:]))",
    r"(?P<dot>(?<!\d)(?P<dot_a>\d{1,2})·(?P<dot_b>\d{1,2})(?!\d))",
    r"(?P<plus>(?<![\d+])(?P<plus_a>[12])\+1(?![\d+]))",
    r"(?P<korean>" + _PART + r"(?:\s?" + _PART + r")*(?:\s?\d{1,4}(?![\d.,]))?)",
)
_KO_NUMBERS = re.compile(
    r"(?=[\dA-Z+₩$€£¥#(−-])(?:"
    + r"(?=[A-Z+₩$€£¥#(]|\d+[A-Z])(?:"
    + "|".join(_KO_SYMBOL_LED)
    + r")|(?=[\d,]+(?:[-:/.·+\s만억조천백AaPp]|\d{9}))(?:"
    + "|".join(_KO_DIGIT_LED)
    + r")|(?P<num>(?P<neg>(?<![\w)\].])[-−])?(?P<ni>"
    + _NUM
    + r")(?P<nf>\.\d+)?))"
)
_GROUPED_DIGITS = re.compile(r"\d+")
_NUMBER_AT = re.compile(rf"({_NUM})(?:\.(\d+))?")
_SHORT_NUMBER_AT = re.compile(r"\d{1,4}(?![\d.,])")
_CLOCK_CODE = re.compile(r"(\d{1,2})([AP])M")
_BASEMENT = re.compile(r"B\d{1,2}")
_UNIT_CODE = re.compile(r"(\d+)(" + "|".join(re.escape(u) for u in _UNITS if u.isascii()) + ")")
_KOREAN_PART = re.compile(rf"({_NUM})(\.\d+)?(천|백)?(조|억|만)?")
_SMALL_MULTIPLIER = {"천": 1000, "백": 100, None: 1}
_BIG_MULTIPLIER = {"조": 10**12, "억": 10**8, "만": 10**4, None: 1}
_CURRENCY = {"₩": ("원", ""), "$": ("달러", "센트"), "€": ("유로", "센트"), "£": ("파운드", "펜스"), "¥": ("엔", "")}
_CURRENCY_MULTIPLIER = {"K": 10**3, "M": 10**6, "B": 10**9, "천": 10**3, "만": 10**4, "억": 10**8, "조": 10**12}
_WEEKDAYS = {d: d + "요일" for d in "월화수목금토일"}


def _digit_groups(text: str) -> str:
    return " ".join(_digit_by_digit(g, _PHONE_DIGITS) for g in _GROUPED_DIGITS.findall(text))


def _money(m: re.Match[str]) -> str:
    """A currency amount as said: $3.50 → 삼 달러 오십 센트, ₩5만 → 오만 원."""
    unit, cents_unit = _CURRENCY[m["cur"]]
    value = Decimal(m["cur_n"].replace(",", "") + (m["cur_f"] or ""))
    if m["cur_u"]:
        return f"{_amount(value * _CURRENCY_MULTIPLIER[m['cur_u']])} {unit}"
    fraction = m["cur_f"] or ""
    if cents_unit and len(fraction) == 3:  # $3.50: dollars and cents
        whole, cents = int(value), int(fraction[1:])
        parts = [f"{sino_korean(whole)} {unit}"] if whole else []
        if cents:
            parts.append(f"{sino_korean(cents)} {cents_unit}")
        return " ".join(parts) or f"영 {unit}"
    return f"{_amount(value)} {unit}"


def _amount(value: Decimal) -> str:
    """An amount that may have come out of ``3.5만``: whole → Sino-Korean, else with 점."""
    if value == value.to_integral_value():
        return sino_korean(int(value))
    whole, _, fraction = format(value.normalize(), "f").partition(".")
    return _sino_decimal(whole, fraction)


def _date(y: str, mo: str, d: str, weekday: str | None) -> str | None:
    month, day = int(mo), int(d)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    out = f"{_month(month)} {sino_korean(day)} 일"
    if y:
        out = f"{sino_korean(int(y))} 년 {out}"
    if weekday:
        out += " " + _WEEKDAYS[weekday]
    return out


def _clock(h: int, m: int, s: int, before: str) -> str:
    out = _hour(h, before) if h else "영 시"
    if m:
        out += f" {sino_korean(m)} 분"
    if s:
        out += f" {sino_korean(s)} 초"
    return out


def _number_with_counter(m: re.Match[str]) -> tuple[str, int]:
    """A plain number: its counter, a range it starts (``3~5명``, ``3-5일``), a minus sign."""
    text = m.string
    integer, fraction = m["ni"], (m["nf"] or "")[1:]
    counter, end = _counter_at(text, m.end())
    negative = m["neg"] is not None
    k = end + 1 if text[end : end + 1] == " " else end
    mark = text[k : k + 1]
    if not negative and mark and mark in "~〜～-":
        j = k + 1
        if mark != "-" and text[j : j + 1] == " ":
            j += 1
        second = _NUMBER_AT.match(text, j) if mark != "-" else _SHORT_NUMBER_AT.match(text, j)
        if second is not None:
            second_counter, _ = _counter_at(text, second.end())
            dash_ok = (
                k == end
                and len(integer) <= 4
                and not fraction
                and (m.start() == 0 or not (text[m.start() - 1].isalnum() or text[m.start() - 1] in ".-"))
                and (second_counter is not None or (len(integer) <= 2 and len(second.group()) <= 2))
            )
            if mark != "-" or dash_ok:
                reading = _count(integer, fraction, counter or second_counter, text, m.start("ni"), end)
                return reading + "에서 ", j
    reading = _count(integer, fraction, counter, text, m.start("ni"), end)
    if negative:
        reading = ("영하 " if counter in ("도", "°C", "℃", "°") else "마이너스 ") + reading
    return reading, end


def _korean_number(m: re.Match[str]) -> tuple[str, int]:
    """The spoken form of one number-like match and where it ends (a counter after it may extend it)."""
    kind = m.lastgroup
    if kind == "num":
        return _number_with_counter(m)
    if kind == "korean":
        value = Decimal(0)
        for number, fraction, small, big in _KOREAN_PART.findall(m.group()):
            part = Decimal(number.replace(",", "") + (fraction or ""))
            value += part * _SMALL_MULTIPLIER[small or None] * _BIG_MULTIPLIER[big or None]
        counter, end = _counter_at(m.string, m.end())
        reading = _amount(value)
        return (f"{reading} {_COUNTERS[counter][1]}" if counter else reading), end
    if kind == "code":
        token = m.group()
        unit = _UNIT_CODE.fullmatch(token)
        if unit is not None:  # 3L, 5GB, 100W: a number and its unit
            return f"{sino_korean(int(unit[1]))} {_UNITS[unit[2]]}", m.end()
        clock = _CLOCK_CODE.fullmatch(token)
        if clock is not None and 1 <= int(clock[1]) <= 12:  # 3PM
            return ("오전 " if clock[2] == "A" else "오후 ") + _clock(int(clock[1]), 0, 0, "오후"), m.end()
        if _BASEMENT.fullmatch(token) and m.string.startswith("층", m.end()):  # B1층: 지하 일 층
            return f"지하 {sino_korean(int(token[1:]))} ", m.end()
        return _spell_code(m.group()), m.end()
    return _korean_pattern(m, kind or ""), m.end()


def _korean_pattern(m: re.Match[str], kind: str) -> str:
    text = m.string
    if kind in ("intl", "phone", "area", "service", "dashed"):
        prefix = "플러스 " if kind == "intl" else ""
        return prefix + _digit_groups(m.group().replace("(0)", ""))
    if kind == "mobile":
        digits = m.group()
        cut = 3 if len(digits) == 10 else 4
        return (
            f"{_digit_by_digit(digits[:3], _PHONE_DIGITS)} {_digit_by_digit(digits[3 : 3 + cut], _PHONE_DIGITS)} "
            + (_digit_by_digit(digits[3 + cut :], _PHONE_DIGITS))
        )
    if kind == "date":
        return _date(m["y"], m["mo"], m["d"], m["wd"]) or _digit_groups(m.group())
    if kind == "ym":
        return f"{sino_korean(int(m['ym_y']))} 년 {_month(int(m['ym_m']))}"
    if kind == "md":
        date = _date("", m["md_m"], m["md_d"], m["md_wd"])
        if date is not None:
            return date
        return f"{sino_korean(int(m['md_d']))}분의 {sino_korean(int(m['md_m']))}"  # a fraction: 15/32
    if kind == "time":
        h, mi, s = int(m["t_h"]), int(m["t_m"]), int(m["t_s"] or 0)
        if h > 24 or mi > 59 or s > 59:
            return " 대 ".join(_sino_decimal(p) for p in m.group().split(":"))
        return _clock(h, mi, s, text[: m.start()])
    if kind == "ampm":
        h, mi = int(m["ap_h"]), int(m["ap_m"] or 0)
        if not 0 <= h <= 12 or mi > 59:
            return _any_digits(m.group())
        return ("오전 " if m["ap"] in "Aa" else "오후 ") + _clock(h, mi, 0, "오후")
    if kind == "pm_first":  # PM 3:00
        h, mi = int(m["pf_h"]), int(m["pf_m"] or 0)
        if not 1 <= h <= 12:
            return ("오전 " if m["pf"] == "A" else "오후 ") + _any_digits(m.group()[2:].strip())
        return ("오전 " if m["pf"] == "A" else "오후 ") + _clock(h, mi, 0, "오후")
    if kind == "ratio":
        return " 대 ".join(_sino_decimal(p) for p in m.group().split(":"))
    if kind == "money":
        said = _money(m)
        # "₩5,000원" says its 원 once; another currency keeps a written 원 ("£5원" is odd, but nothing written is lost)
        return said + " 원" if m["cur"] != "₩" and m.group().endswith("원") else said
    if kind == "dot":
        return _digit_by_digit(m["dot_a"] + m["dot_b"], _SINO_DIGITS)  # 3·1절 → 삼일절, 6·25 → 육이오
    if kind == "hash":
        return f"{sino_korean(int(m['hash_n']))} 번"
    if kind == "plus":
        return ("원" if m["plus_a"] == "1" else "투") + " 플러스 원"
    return _any_digits(m.group())


def _korean_numbers(text: str) -> str:
    if _LONG_DIGIT_RUN.search(text):  # no quantity: read digit by digit (and never int() 5,000 digits)
        text = _LONG_DIGIT_RUN.sub(lambda m: _digit_by_digit(m.group(), _SINO_DIGITS), text)
    out = []
    last = 0
    search = _KO_NUMBERS.search
    while (m := search(text, last)) is not None:
        try:
            reading, end = _korean_number(m)
        except ValueError:  # thousands of digits in comma groups: past int()'s limit
            reading, end = _DIGIT_RUN.sub(lambda d: _digit_by_digit(d.group(), _SINO_DIGITS), m.group()), m.end()
        out.append(text[last : m.start()])
        out.append(reading)
        if text[end : end + 1].isdigit() and not reading.endswith(" "):
            out.append(" ")  # 2박3일: 이 박 삼 일
        last = end
    out.append(text[last:])
    return "".join(out)


# --- letters and symbols ----------------------------------------------------------------------------------------

_LETTER_NAMES = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        (
            "에이 비 씨 디 이 에프 지 에이치 아이 제이 케이 엘 엠 엔 오 피 큐 알 에스 티 유 브이 더블유 엑스 와이 지"
        ).split(),
        strict=True,
    )
)
_CODE_RUNS = re.compile(r"[A-Z]+|\d+")


def _spell(letters: str) -> str:
    return "".join(_LETTER_NAMES.get(ch, "앤" if ch == "&" else ch) for ch in letters)


def _spell_code(code: str) -> str:
    """MP3 → 엠피쓰리, 5G → 파이브지, KF94 → 케이에프구십사, A380 → 에이삼팔공."""
    out = []
    for run in _CODE_RUNS.findall(code):
        if run[0].isalpha():
            out.append(_spell(run))
        elif len(run) == 1:
            out.append(_ENGLISH_DIGITS[int(run)])
        elif len(run) == 2 and run[0] != "0":
            out.append(sino_korean(int(run)))
        else:
            out.append(_digit_by_digit(run, _PHONE_DIGITS))
    return "".join(out)


_PER_UNITS = {**_UNITS, **{w: w for w in "개 명 인 박 일 시간 월 년 회 장 병 잔 주 건".split()}}
_KO_WORDS = re.compile(
    r"(?=[A-Z/&+#@])(?:"
    + "|".join(
        (
            r"(?P<per>/(?P<per_u>"
            + "|".join(re.escape(u) for u in sorted(_PER_UNITS, key=len, reverse=True))
            + r")(?![A-Za-z가-힣]))",
            r"(?P<acronym>(?<![A-Za-z])[A-Z]{1,8}(?:&[A-Z]{1,8})*(?![A-Za-z]))",
            r"(?P<amp>&)",
            r"(?P<sym>[+#@])",
        )
    )
    + ")"
)
# After the words above are said: a slash or a tilde between two spoken words (예약/변경, 서울~부산, 만~이만).
_WEEKDAY_RANGE = re.compile(
    r"(?<![가-힣])([월화수목금토일])(?:요일)?\s?[~〜～-]\s?([월화수목금토일])(?:요일)?(?![가-힣])"
)
_KO_JOINERS = re.compile(r"(?<=[가-힣])(?:(?P<slash>/)|(?P<tilde>[~〜～]))(?=[가-힣])")
_SYMBOL_NAMES = {"+": "플러스", "#": "샵", "@": "앳"}


def _korean_word(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "acronym":
        return _spell(m.group())
    if kind == "per":
        unit = m["per_u"]
        return f" {_UNITS.get(unit, unit)}당"
    name = "앤드" if kind == "amp" else _SYMBOL_NAMES[m.group().strip()]
    return _spaced(m, name)


def _joiner(m: re.Match[str]) -> str:
    return " " if m.lastgroup == "slash" else "에서 "


def _spaced(m: re.Match[str], word: str) -> str:
    """A symbol's name as its own word, without adding a space at the edges of the text or before punctuation."""
    text = m.string
    before = " " if m.start() > 0 and text[m.start() - 1] not in " (" else ""
    after = " " if m.end() < len(text) and text[m.end()] not in " .,!?)" else ""
    return before + word + after


# --- protected spans: URLs, e-mail, domains, code -------------------------------------------------------------

_PROTECTED = re.compile(
    r"(?:https?://|www\.)[^\s가-힣]+"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?<![\w.])[A-Za-z][\w-]*(?:\.[A-Za-z0-9-]+)*\.(?:com|net|org|kr|io|co|ai|dev|app|me|jp|us|uk)(?![A-Za-z])(?:/[^\s가-힣]*)?"
    r"|(?<!\w)[A-Za-z0-9]*_[\w]*"
)
_FULL_WIDTH = str.maketrans({"％": "%", "＋": "+", "＃": "#"})
# Cheap test for what _PROTECTED could match (a sentence-final "요." does not).
_MAYBE_PROTECTED = re.compile(r"://|www\.|@|_|[A-Za-z0-9-]\.[A-Za-z]")
_HAS_FULL_WIDTH = re.compile(r"[％＋＃]")
# Digits of other scripts (full-width ３, Arabic-Indic ٣…) are read like ASCII ones: \d matches them all.
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")
_NEEDS_WORK = re.compile(r"[\dA-Z%&+#@/~\-〜～₩$€£¥°℃℉㎞㎏㎎㎖㎜㎝㎡％＋＃]")
_SPACES = re.compile(r" {2,}")


def _korean_plain(text: str) -> str:
    if _DIGIT_RUN.search(text):
        text = _korean_numbers(text)
    text = _KO_WORDS.sub(_korean_word, text)
    if "  " in text:
        text = _SPACES.sub(" ", text)
    if "/" in text or "~" in text or "〜" in text or "～" in text or "-" in text:
        text = _WEEKDAY_RANGE.sub(r"\1요일에서 \2요일", text)
        text = _KO_JOINERS.sub(_joiner, text)
    return text


def _ascii_digits(text: str) -> str:
    if _OTHER_DIGIT.search(text):
        text = _OTHER_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group())), text)
    if _HAS_FULL_WIDTH.search(text):
        text = text.translate(_FULL_WIDTH)
    return text


def _korean(text: str) -> str:
    if not _NEEDS_WORK.search(text):
        return text
    text = _ascii_digits(text)
    if not _MAYBE_PROTECTED.search(text):
        return _korean_plain(text)
    out = []
    last = 0
    for m in _PROTECTED.finditer(text):
        if m.start() > last:
            out.append(_korean_plain(text[last : m.start()]))
        out.append(m.group())
        last = m.end()
    if last < len(text):
        out.append(_korean_plain(text[last:]))
    return "".join(out)


# --- English ------------------------------------------------------------------------------------------------------

_EN_UNITS = {
    "km/h": "kilometers per hour",
    "km": "kilometers",
    "kg": "kilograms",
    "mg": "milligrams",
    "g": "grams",
    "L": "liters",
    "ml": "milliliters",
    "cm": "centimeters",
    "mm": "millimeters",
    "m": "meters",
    "GB": "gigabytes",
    "MB": "megabytes",
    "%": "percent",
    "°C": "degrees Celsius",
    "℃": "degrees Celsius",
    "°F": "degrees Fahrenheit",
    "°": "degrees",
}
_EN_UNIT = (
    "(?:"
    + "|".join(
        re.escape(u) + (r"(?![A-Za-z])" if u[-1].isalpha() else "") for u in sorted(_EN_UNITS, key=len, reverse=True)
    )
    + ")"
)
_EN_CURRENCY = {
    "$": ("dollar", "cent"),
    "€": ("euro", "cent"),
    "£": ("pound", "penny"),
    "₩": ("won", ""),
    "¥": ("yen", ""),
}
_EN_MONTHS = "January February March April May June July August September October November December".split()
_EN = re.compile(
    "|".join(
        (
            r"(?P<phone>(?<![\d-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)\s?|\d{2,4}[ .-])\d{3,4}[ .-]\d{4}(?![\d-]))",
            r"(?P<date>(?<!\d)(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})(?!\d))",
            r"(?P<dashed>(?<![\d-])\d+(?:-\d+){2,}(?![\d-]))",
            r"(?P<md>(?<![\d/.])(?P<md_m>\d{1,2})/(?P<md_d>\d{1,2})(?![\d/]))",
            r"(?P<hash>#(?P<hash_n>\d+))",
            r"(?P<time>(?<![\d:])(?P<h>\d{1,2}):(?P<mi>\d{2})(?:\s?(?P<ap>[AaPp])\.?[Mm]\.?(?![A-Za-z]))?(?![\d:]))",
            r"(?P<hour>(?<![\d:])(?P<hh>\d{1,2})\s?(?P<hap>[AaPp])\.?[Mm]\.?(?![A-Za-z]))",
            r"(?P<money>(?P<cur>[$€£₩¥])\s?(?P<cn>"
            + _NUM
            + r")(?P<cf>\.\d+)?(?:\s?(?P<cu>[KMB]|thousand|million|billion)(?![A-Za-z]))?)",
            r"(?P<ordinal>(?<![\d.])(?P<on>\d+)(?:st|nd|rd|th)(?![A-Za-z]))",
            r"(?P<range>(?<![\d.])(?P<r1>" + _NUM + r")\s?[~–-]\s?(?=\d))",
            r"(?P<year>(?<![\d,.$])(?P<yr>1[5-9]\d\d|20\d\d)(?![\d,%]|\.\d|\s?" + _EN_UNIT + r"))",
            r"(?P<num>(?P<neg>(?<![\w)])[-−])?(?P<ni>" + _NUM + r")(?P<nf>\.\d+)?(?:\s?(?P<nu>" + _EN_UNIT + r"))?)",
        )
    )
)
_EN_DIGIT_NAMES = "zero one two three four five six seven eight nine".split()
_LONG_EN_DIGIT_RUN = re.compile(r"\d{16,}")
_EN_MULTIPLIER = {"K": 10**3, "M": 10**6, "B": 10**9, "thousand": 10**3, "million": 10**6, "billion": 10**9}


def _n2w(value: int | Decimal, to: str = "cardinal") -> str:
    from num2words import num2words  # type: ignore[import-untyped]

    return str(num2words(value, lang="en", to=to)).replace(",", "")


def _en_number(integer: str, fraction: str = "") -> str:
    out = _n2w(int(integer.replace(",", ""))).replace(",", "")
    if fraction:
        out += " point " + " ".join(_EN_DIGIT_NAMES[int(d)] for d in fraction)
    return out


def _en_clock(h: int, mi: int, ap: str | None) -> str:
    out = _n2w(h)
    if mi:
        out += " " + ("oh " + _n2w(mi) if mi < 10 else _n2w(mi))
    elif not ap:
        out += " o'clock"
    if ap:
        out += " a.m." if ap in "Aa" else " p.m."
    return out


def _english_match(m: re.Match[str]) -> str:
    try:
        spoken = _english_reading(m)
    except (ValueError, OverflowError):  # past int()'s or num2words' limits: digit by digit
        spoken = _DIGIT_RUN.sub(lambda d: " ".join(_EN_DIGIT_NAMES[int(c)] for c in d.group()), m.group())
    following = m.string[m.end() : m.end() + 1]
    return spoken + " " if following.isalpha() and spoken[-1:].isalpha() else spoken  # 3x: three x


def _english_reading(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "num":
        fraction = (m["nf"] or "")[1:]
        out = _en_number(m["ni"], fraction)
        if m["neg"]:
            out = "minus " + out
        unit = m["nu"]
        if unit:
            spoken = _EN_UNITS[unit]
            if m["ni"] == "1" and not fraction and spoken.endswith("s") and unit != "%":
                spoken = spoken[:-1]
            out += " " + spoken
        return out
    if kind == "md":
        month, day = int(m["md_m"]), int(m["md_d"])
        if 1 <= month <= 12 and 1 <= day <= 31:
            return f"{_EN_MONTHS[month - 1]} {_n2w(day, 'ordinal')}"
        return f"{_n2w(int(m['md_m']))} {_n2w(int(m['md_d']))}"  # 24/7
    if kind == "hash":
        return "number " + _n2w(int(m["hash_n"]))
    if kind in ("phone", "dashed"):
        groups = _GROUPED_DIGITS.findall(m.group())
        prefix = "plus " if m.group().startswith("+") else ""
        return prefix + ", ".join(" ".join(_EN_DIGIT_NAMES[int(d)] for d in g) for g in groups)
    if kind == "date":
        month, day = int(m["mo"]), int(m["d"])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return " ".join(_en_number(g) for g in _GROUPED_DIGITS.findall(m.group()))
        return f"{_EN_MONTHS[month - 1]} {_n2w(day, 'ordinal')}, {_n2w(int(m['y']), 'year')}"
    if kind == "time":
        h, mi = int(m["h"]), int(m["mi"])
        if h > 24 or mi > 59:
            return " to ".join(_en_number(p) for p in (m["h"], m["mi"]))
        return _en_clock(h, mi, m["ap"])
    if kind == "hour":
        return _en_clock(int(m["hh"]), 0, m["hap"])
    if kind == "money":
        unit, cent = _EN_CURRENCY[m["cur"]]
        value = Decimal(m["cn"].replace(",", "") + (m["cf"] or ""))
        if m["cu"]:
            value *= _EN_MULTIPLIER[m["cu"]]
            spoken = _n2w(int(value)) if value == value.to_integral_value() else _en_number(*str(value).split("."))
            return f"{spoken} {unit}s" if unit not in ("won", "yen") else f"{spoken} {unit}"
        whole = int(value)
        fraction = m["cf"] or ""
        plural = "" if whole == 1 or unit in ("won", "yen") else "s"
        out = f"{_n2w(whole)} {unit}{plural}"
        if cent and len(fraction) == 3 and int(fraction[1:]):
            cents = int(fraction[1:])
            cent_word = cent if cents == 1 else ("pence" if cent == "penny" else cent + "s")
            out = f"{out} and {_n2w(cents)} {cent_word}" if whole else f"{_n2w(cents)} {cent_word}"
        elif fraction and not (cent and len(fraction) == 3):
            out = f"{_en_number(str(whole), fraction[1:])} {unit}s"
        return out
    if kind == "ordinal":
        return _n2w(int(m["on"]), "ordinal")
    if kind == "range":
        return _en_number(m["r1"]) + " to "
    if kind == "year":
        return _n2w(int(m["yr"]), "year")
    return m.group()


def _english(text: str) -> str:
    if not _DIGIT_RUN.search(text):
        return text
    text = _ascii_digits(text)
    if _LONG_EN_DIGIT_RUN.search(text):  # no quantity: digit by digit (num2words stops at 10**306)
        text = _LONG_EN_DIGIT_RUN.sub(lambda m: " ".join(_EN_DIGIT_NAMES[int(d)] for d in m.group()), text)
    if not _MAYBE_PROTECTED.search(text):
        return _EN.sub(_english_match, text)
    out = []
    last = 0
    for m in _PROTECTED.finditer(text):
        if m.start() > last:
            out.append(_EN.sub(_english_match, text[last : m.start()]))
        out.append(m.group())
        last = m.end()
    if last < len(text):
        out.append(_EN.sub(_english_match, text[last:]))
    return "".join(out)


# --- the entry point ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _base_lang(lang: str) -> str:
    return lang.lower().replace("_", "-").split("-")[0]


def speakable(text: str, lang: str = "ko", lexicon: Lexicon | None = None) -> str:
    """The words a TTS should say for ``text``: the lexicon first, then the rules of ``lang`` (``ko``, ``en``).

    ``speakable("4명, 총 12,500원입니다.") == "네 명, 총 만 이천오백 원입니다."``. What no rule can read is left
    as written; URLs, e-mail addresses and code are never touched.
    """
    if lexicon is not None:
        text = lexicon.apply(text)
    base = _base_lang(lang)
    if base == "ko":
        return _korean(text)
    if base == "en":
        return _english(text)
    return text


def speaker(lang: str = "ko", lexicon: Lexicon | None = None) -> Callable[[str], str]:
    """:func:`speakable` bound to one language and lexicon: the text → speech-text callable the engine takes."""
    return partial(speakable, lang=lang, lexicon=lexicon)
