"""Text processing for speech: incremental sentence segmentation of the streamed LLM answer, written → spoken text."""

from hanmadi.text.lexicon import Lexicon, LexiconEntry, LexiconError
from hanmadi.text.segmenter import SentenceSegmenter
from hanmadi.text.speakable import speakable, speaker

__all__ = ["Lexicon", "LexiconEntry", "LexiconError", "SentenceSegmenter", "speakable", "speaker"]
