"""The Twilio sink: one turn's audio -> 8 kHz mu-law ``media`` messages and a ``mark`` after each sentence.

The engine hands over audio chunk by chunk at the TTS's own rate; each sentence gets its own
:class:`~hanmadi.telephony.audio.TelephoneEncoder` (one resampler for the whole sentence, so no clicks at chunk
edges). ``on_audio`` sees every piece of mu-law just before it is sent — the call models playback and records the
bot's side of the call from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hanmadi.providers.base import AudioChunk
from hanmadi.telephony import audio
from hanmadi.telephony import twilio as tw

Send = Callable[[str], Awaitable[None]]
OnAudio = Callable[[int, bytes], None]


class TwilioSink:
    """The engine's ``Sink`` for turn ``turn``: media messages, then a mark named ``t<turn>s<index>``."""

    def __init__(self, stream_sid: str, turn: int, send: Send, on_audio: OnAudio | None = None) -> None:
        self.stream_sid = stream_sid
        self.turn = turn
        self._send = send
        self._on_audio = on_audio
        self._encoders: dict[int, audio.TelephoneEncoder] = {}

    async def send_audio(self, index: int, chunk: AudioChunk) -> None:
        """Transcode one chunk of sentence ``index`` (in order) and send it."""
        encoder = self._encoders.get(index)
        if encoder is None or encoder.sample_rate != chunk.sample_rate:
            encoder = self._encoders[index] = audio.TelephoneEncoder(chunk.sample_rate)
        await self._send_ulaw(index, encoder.encode(chunk.pcm))

    async def send_mark(self, index: int) -> None:
        """Sentence ``index`` is complete: send the resampler's tail, then its mark."""
        encoder = self._encoders.pop(index, None)
        if encoder is not None:
            await self._send_ulaw(index, encoder.flush())
        await self._send(tw.mark_message(self.stream_sid, tw.mark_name(self.turn, index)))

    async def _send_ulaw(self, index: int, ulaw: bytes) -> None:
        if not ulaw:
            return
        if self._on_audio is not None:
            self._on_audio(index, ulaw)
        for message in tw.media_messages(self.stream_sid, ulaw):
            await self._send(message)
