"""Text processing for speech: incremental sentence segmentation of the streamed LLM answer."""

from hanmadi.text.segmenter import SentenceSegmenter

__all__ = ["SentenceSegmenter"]
