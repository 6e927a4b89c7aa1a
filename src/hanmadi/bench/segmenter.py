"""Throughput of the sentence segmenter on realistic Korean phone answers streamed as 2-character tokens.

``python -m hanmadi.bench.segmenter`` prints the result as JSON.
"""

from __future__ import annotations

import json
import time

from hanmadi.text import SentenceSegmenter

# Answers as an LLM writes them on the phone: polite endings with and without periods, numbers, a list, a
# quote, a little English and markdown.
ANSWERS: tuple[str, ...] = (
    "네, 예약 도와드리겠습니다. 몇 시로 해 드릴까요?",
    "오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?",
    "가격은 3.5만원이고요 주차는 무료예요",
    "변경하시려면 다음 순서로 진행해 주세요.\n1. 본인 확인\n2. 예약 변경\n3. 결제 확인",
    "고객님, 말씀하신 내일 오후 세 시 예약은 이미 마감되었습니다. 대신 네 시는 가능한데 괜찮으실까요?",
    "**영업시간**은 평일 오전 9시부터 오후 6시까지입니다. 주말과 공휴일은 휴무예요!",
    '담당자가 "곧 연락드리겠습니다"라고 전해 달라고 했어요. 혹시 다른 문의 사항 있으신가요?',
    "배송은 보통 2~3일 정도 걸리고요, 제주도나 도서 산간 지역은 하루 이틀 더 걸릴 수 있습니다.",
    "Wi-Fi 비밀번호는 hanmadi2024입니다. 자세한 내용은 example.com에서 확인하실 수 있어요 😊",
    "죄송하지만 그 부분은 제가 확인해 드리기 어렵습니다. 상담원에게 연결해 드릴까요?",
    "네 알겠습니다 그럼 카드 번호 마지막 네 자리를 말씀해 주시겠어요?",
    "환불은 결제하신 수단으로 진행되며, 영업일 기준 3~5일 안에 처리됩니다.",
)


def run(tokens: int = 200_000) -> dict[str, float | int]:
    """Stream ``tokens`` 2-character tokens of Korean answers through one segmenter; return throughput."""
    stream: list[list[str]] = []
    count = 0
    while count < tokens:
        for answer in ANSWERS:
            answer_tokens = [answer[i : i + 2] for i in range(0, len(answer), 2)][: tokens - count]
            stream.append(answer_tokens)
            count += len(answer_tokens)
            if count >= tokens:
                break
    segmenter = SentenceSegmenter()
    sentences = 0
    start = time.perf_counter()
    for answer_tokens in stream:
        for token in answer_tokens:
            sentences += len(segmenter.push(token))
        sentences += len(segmenter.flush())
    seconds = time.perf_counter() - start
    return {"tokens": count, "seconds": seconds, "tokens_per_s": count / seconds, "sentences": sentences}


if __name__ == "__main__":
    print(json.dumps(run()))
