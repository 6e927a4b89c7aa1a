"""Throughput of written → spoken text (:func:`hanmadi.text.speakable`) on one core.

Sentences as the segmenter hands them to the TTS: a phone agent's Korean answers, more than half of them with
numbers, times, dates, money or phone numbers (more than a real call has, so the figure is a floor).
``hanmadi bench speakable`` prints the result as JSON.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from hanmadi.text import speakable

SENTENCES_KO: tuple[str, ...] = (
    "네, 예약 도와드리겠습니다.",
    "내일 오후 3시 30분에 4명, 총 12,500원입니다.",
    "문의는 010-1234-5678로 주세요.",
    "몇 시로 해 드릴까요?",
    "영업시간은 평일 오전 9시부터 오후 6시까지입니다.",
    "배송은 보통 2~3일 정도 걸립니다.",
    "KTX 타시면 2시간 40분 걸려요.",
    "죄송하지만 그 부분은 확인이 어렵습니다.",
    "6월 3일 오후 2시 30분, 성인 2명 어린이 1명 맞으시죠?",
    "총 3박 4일, 2인 기준 450,000원이에요.",
    "주차는 2시간까지 무료이고, 이후 10분당 1,000원이 부과됩니다.",
    "상담원에게 연결해 드릴까요?",
    "예약번호는 20481입니다.",
    "환불은 영업일 기준 3~5일 안에 처리됩니다.",
    "고객센터 1588-1234로 연락 주시면 됩니다.",
    "다른 문의 사항 있으신가요?",
    "2024년 3월 15일 금요일로 변경해 드렸습니다.",
    "오늘 서울 기온은 25°C, 강수 확률은 30%예요.",
    "감사합니다. 좋은 하루 보내세요.",
    "3.5만 원짜리 코스와 5만 원짜리 코스가 있어요.",
)
SENTENCES_EN: tuple[str, ...] = (
    "Your table for 4 is booked at 7:30 pm.",
    "The total is $125.50, including tax.",
    "Please call us at 555-123-4567.",
    "Is there anything else I can help you with?",
    "Delivery takes 3-5 business days.",
    "We're open from 9 am to 6 pm.",
)


def _measure(sentences: Sequence[str], count: int, lang: str, repeats: int) -> tuple[int, list[float]]:
    """Normalise ``count`` sentences in ``repeats`` rounds; the sentences done and each round's sentences/s."""
    batch = list(sentences)
    rounds = max(1, count // (len(batch) * repeats))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(rounds):
            for sentence in batch:
                speakable(sentence, lang)
        rates.append(rounds * len(batch) / (time.perf_counter() - start))
    return rounds * len(batch) * repeats, rates


def run(sentences: int = 200_000, lang: str = "ko", repeats: int = 5) -> dict[str, Any]:
    """Normalise ``sentences`` sentences (the corpus over and over, in ``repeats`` rounds) on this thread; return
    the throughput of the best and the median round (a shared machine slows some rounds down), overall and for
    the sentences that have something to rewrite."""
    corpus = SENTENCES_KO if lang.startswith("ko") else SENTENCES_EN
    with_numbers = [s for s in corpus if speakable(s, lang) != s]
    for sentence in corpus:  # warm up: regex caches, num2words import
        speakable(sentence, lang)
    done, rates = _measure(corpus, sentences, lang, repeats)
    done_numbers, rates_numbers = _measure(with_numbers, max(1, sentences // 2), lang, repeats)
    best = max(rates)
    return {
        "lang": lang,
        "sentences": done,
        "repeats": repeats,
        "sentences_per_s": round(best),
        "median_sentences_per_s": round(statistics.median(rates)),
        "mean_us": round(1e6 / best, 2),
        "corpus": len(corpus),
        "corpus_rewritten": len(with_numbers),
        "rewritten_sentences": done_numbers,
        "rewritten_sentences_per_s": round(max(rates_numbers)),
        "rewritten_median_sentences_per_s": round(statistics.median(rates_numbers)),
        "rewritten_mean_us": round(1e6 / max(rates_numbers), 2),
        "target_sentences_per_s": 50_000,
    }
