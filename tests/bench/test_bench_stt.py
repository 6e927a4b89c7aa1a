"""``hanmadi bench stt``: CER arithmetic, the telephone path, the JSON it prints and its per-file rows.

Real Korean recordings are not available offline, so the WAVs here are espeak's voice or tones and the recognisers
are scripted: these tests check the bench's mechanics, never a recogniser's quality.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hanmadi.bench.stt import BenchError, cer, edit_distance, load_audio, normalize, run_stt_bench
from hanmadi.cli import app
from hanmadi.providers.base import Transcript
from hanmadi.providers.local.espeak_tts import EspeakTTS
from hanmadi.telephony import audio
from hanmadi.telephony.caller import write_wav


def test_cer_ignores_spaces_and_punctuation() -> None:
    assert normalize("주차는 가능한가요?") == "주차는가능한가요"
    assert cer("주차는 가능한가요?", "주차는가능한가요") == 0.0
    assert cer("네, 감사합니다.", "네 감사합니다") == 0.0


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("가나다라", "가나다라", 0.0),
        ("가나다라", "가나라", 0.25),  # one deletion
        ("가나다라", "가나다라마", 0.25),  # one insertion
        ("가나다라", "가나바라", 0.25),  # one substitution
        ("가나", "다라마바", 2.0),  # CER can pass 1 when the hypothesis is long and wrong
        ("", "", 0.0),
        ("", "가", 1.0),
    ],
)
def test_cer_on_known_strings(ref: str, hyp: str, expected: float) -> None:
    assert cer(ref, hyp) == pytest.approx(expected)


def test_edit_distance_is_symmetric() -> None:
    assert edit_distance("가장 가까운 지하철역", "가장가까운지하철") == edit_distance(
        "가장가까운지하철", "가장 가까운 지하철역"
    )


def tone_wav(path: Path, rate: int, seconds: float) -> None:
    t = np.arange(int(rate * seconds)) / rate
    write_wav(path, (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes(), rate)


def test_the_phone_path_is_8_khz_mu_law(tmp_path: Path) -> None:
    tone_wav(tmp_path / "a.wav", 16000, 1.0)
    pcm, rate = load_audio(tmp_path / "a.wav", phone=True)
    assert rate == 8000 and len(pcm) == 2 * 8000
    samples = np.frombuffer(pcm, dtype="<i2")
    levels = set(audio.ulaw_to_pcm16(bytes(range(256))).tolist())
    assert set(samples.tolist()) <= levels  # every sample is a μ-law level: it went through the codec
    wide, wide_rate = load_audio(tmp_path / "a.wav", phone=False)
    assert wide_rate == 16000 and len(wide) == 2 * 16000
    assert not set(np.frombuffer(wide, dtype="<i2").tolist()) <= levels


class ListSTT:
    """Each opened stream finalizes with the next text of ``texts``; records the rates it was opened at."""

    name = "scripted"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.rates: list[int] = []
        self.pushed: list[int] = []

    async def open(self, sample_rate: int = 8000) -> ListStream:
        self.rates.append(sample_rate)
        self.pushed.append(0)
        return ListStream(self, self.texts[len(self.rates) - 1])


class ListStream:
    def __init__(self, stt: ListSTT, text: str) -> None:
        self.stt, self.text = stt, text

    async def push(self, pcm: bytes) -> list[Transcript]:
        self.stt.pushed[-1] += len(pcm)
        return []

    async def finalize(self) -> Transcript:
        return Transcript(self.text, is_final=True)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    """Two espeak WAVs at 16 kHz and their references."""
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()

    async def speak(text: str) -> tuple[bytes, int]:
        chunks = [c async for c in EspeakTTS().synthesize(text)]
        return b"".join(c.pcm for c in chunks), chunks[0].sample_rate

    refs = {"q1": "주차는 가능한가요?", "q2": "몇 시까지 영업하세요?"}
    for stem, text in refs.items():
        pcm, rate = asyncio.run(speak(text))
        samples = audio.resample(np.frombuffer(pcm, dtype="<i2"), rate, 16000)
        write_wav(audio_dir / f"{stem}.wav", samples.astype("<i2").tobytes(), 16000)
    (audio_dir / "notes.txt").write_text("not audio")
    refs_path = tmp_path / "refs.json"
    refs_path.write_text(json.dumps(refs, ensure_ascii=False), encoding="utf-8")
    return audio_dir, refs_path


@pytest.mark.local
async def test_the_bench_scores_every_file_and_pools_the_cer(corpus: tuple[Path, Path]) -> None:
    audio_dir, refs_path = corpus
    stt = ListSTT(["주차는 가능한가요", "몇 시까지 영업하셔요"])  # the second: one substitution in 9 characters
    result = await run_stt_bench(stt, audio_dir, refs_path, phone=True, pause_ms=100)
    assert set(result) >= {"provider", "files", "cer", "final_latency_ms", "per_file"}
    assert result["provider"] == "scripted" and result["files"] == 2
    assert result["per_file"] == [
        {"file": "q1.wav", "cer": 0.0, "text": "주차는 가능한가요"},
        {"file": "q2.wav", "cer": round(1 / 9, 3), "text": "몇 시까지 영업하셔요"},
    ]
    assert result["cer"] == round(1 / (8 + 9), 3)  # edits over all reference characters
    assert set(result["final_latency_ms"]) == {"p50", "p95"}
    assert stt.rates == [8000, 8000]  # the phone path feeds 8 kHz
    assert all(n > 8000 * 2 // 2 for n in stt.pushed)  # the audio (and the pause) reached the recogniser


async def test_a_wav_without_a_reference_is_a_clear_error(tmp_path: Path) -> None:
    tone_wav(tmp_path / "lonely.wav", 8000, 0.2)
    refs = tmp_path / "refs.json"
    refs.write_text("{}")
    with pytest.raises(BenchError, match=r"lonely\.wav"):
        await run_stt_bench(ListSTT([""]), tmp_path, refs)
    with pytest.raises(BenchError, match=r"no \.wav"):
        await run_stt_bench(ListSTT([""]), tmp_path / "missing", refs)
    refs.write_text("[1, 2]")
    with pytest.raises(BenchError, match="JSON object"):
        await run_stt_bench(ListSTT([""]), tmp_path, refs)


def test_the_command_prints_the_json_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    tone_wav(tmp_path / "t1.wav", 16000, 0.5)
    tone_wav(tmp_path / "t2.wav", 8000, 0.5)
    # the simulated recogniser says its first scripted line in every new stream
    refs = {"t1": "안녕하세요, 예약 좀 변경하고 싶어요.", "t2": "다른 말"}
    (tmp_path / "refs.json").write_text(json.dumps(refs, ensure_ascii=False), encoding="utf-8")
    args = ["bench", "stt", "--audio", str(tmp_path), "--refs", str(tmp_path / "refs.json"), "--stt", "simulated"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["provider"] == "simulated" and data["files"] == 2 and data["phone"] is False
    assert [row["file"] for row in data["per_file"]] == ["t1.wav", "t2.wav"]
    assert data["per_file"][0]["cer"] == 0.0 and data["per_file"][1]["cer"] > 1.0
    bad = CliRunner().invoke(app, ["bench", "stt", "--audio", str(tmp_path / "none"), "--refs", "x.json"])
    assert bad.exit_code == 2
