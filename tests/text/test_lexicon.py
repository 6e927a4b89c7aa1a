"""The deployment lexicon: TSV and JSON files, whole words, case, and a bad file as a clear start-up error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from hanmadi.config import Settings
from hanmadi.text import Lexicon, LexiconEntry, LexiconError, speakable


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_lexicon(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "lexicon.tsv",
        "# brand names\n\n한마디\t한마디 상담원\nGemma\t젬마\tignore_case\nKT&G\t케이티앤지\n",
    )
    lexicon = Lexicon.load(path)
    assert len(lexicon) == 3
    assert lexicon.apply("한마디는 GEMMA와 gemma, KT&G를 써요") == "한마디 상담원는 젬마와 젬마, 케이티앤지를 써요"


def test_json_lexicon_forms(tmp_path: Path) -> None:
    flat = _write(tmp_path, "flat.json", json.dumps({"Hanmadi": "한마디"}))
    assert Lexicon.load(flat).apply("Hanmadi hanmadi") == "한마디 hanmadi"
    insensitive = _write(
        tmp_path, "insensitive.json", json.dumps({"case_sensitive": False, "entries": {"Hanmadi": "한마디"}})
    )
    assert Lexicon.load(insensitive).apply("HANMADI hanmadi") == "한마디 한마디"
    listed = _write(
        tmp_path,
        "list.json",
        json.dumps(
            {
                "entries": [
                    {"written": "AI", "spoken": "에이아이"},
                    {"written": "ok", "spoken": "오케이", "case_sensitive": False},
                ]
            }
        ),
    )
    assert Lexicon.load(listed).apply("AI ai OK") == "에이아이 ai 오케이"


def test_whole_words_only_but_a_particle_may_follow() -> None:
    lexicon = Lexicon.from_mapping({"한마디": "한마디 봇", "KTX": "고속철도", "사과": "애플"})
    assert lexicon.apply("한마디가 한마디요") == "한마디 봇가 한마디 봇요"
    assert lexicon.apply("두한마디") == "두한마디"  # inside a longer word
    assert lexicon.apply("사과문") == "사과문"  # another word, not a particle, follows
    assert lexicon.apply("KTX로 KTXs XKTX") == "고속철도로 KTXs XKTX"


def test_longest_entry_wins() -> None:
    lexicon = Lexicon.from_mapping({"서울": "서울시", "서울역": "서울 역"})
    assert lexicon.apply("서울역에서 서울로") == "서울 역에서 서울시로"


def test_case_sensitive_entry_beats_an_insensitive_one() -> None:
    lexicon = Lexicon([LexiconEntry("SK", "에스케이"), LexiconEntry("sk", "스크", case_sensitive=False)])
    assert lexicon.apply("SK Sk sk") == "에스케이 스크 스크"


def test_lexicon_is_applied_before_the_rules() -> None:
    lexicon = Lexicon.from_mapping({"7번가피자": "세븐스 애비뉴 피자", "1+1": "하나 더"})
    assert speakable("7번가피자 1+1 행사는 3일까지", lexicon=lexicon) == "세븐스 애비뉴 피자 하나 더 행사는 삼 일까지"


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("bad.tsv", "한마디\t한 마디\nno tab here\n", "line 2"),
        ("empty.tsv", "# nothing\n\n", "no entries"),
        ("blank.tsv", "한마디\t \n", "line 1"),
        ("flag.tsv", "한마디\t한 마디\tsometimes\n", "third column"),
        ("bad.json", "{not json", "not valid JSON"),
        ("list.json", json.dumps(["a", "b"]), "JSON object"),
        ("spoken.json", json.dumps({"a": 3}), "non-empty spoken"),
        ("entries.json", json.dumps({"entries": [{"written": "a"}]}), "entry 0"),
        ("case.json", json.dumps({"case_sensitive": "no", "entries": {"a": "b"}}), "case_sensitive"),
    ],
)
def test_bad_lexicon_file_names_the_file_and_reason(tmp_path: Path, name: str, text: str, reason: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(LexiconError) as error:
        Lexicon.load(path)
    assert str(path) in str(error.value) and reason in str(error.value)


def test_missing_lexicon_file(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="cannot read"):
        Lexicon.load(tmp_path / "nope.tsv")


def test_bad_lexicon_is_a_start_up_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.tsv", "only one column\n")
    with pytest.raises(ValidationError) as error:
        Settings(lexicon=path, _env_file=None)  # type: ignore[call-arg]
    assert "lexicon" in str(error.value) and "line 1" in str(error.value)


def test_settings_lexicon_reaches_the_speaker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "lexicon.tsv", "한마디\t한마디 상담원\n")
    monkeypatch.setenv("HANMADI_LEXICON", str(path))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    to_speech = settings.speaker()
    assert to_speech is not None and to_speech("한마디 2명") == "한마디 상담원 두 명"
    # a copied Settings (as the CLI makes) keeps the loaded lexicon
    copied = settings.model_copy(update={"dev": True}).speaker()
    assert copied is not None and copied("한마디") == "한마디 상담원"
    monkeypatch.setenv("HANMADI_SPEAKABLE", "false")
    assert Settings(_env_file=None).speaker() is None  # type: ignore[call-arg]


def test_a_lexicon_of_thousands_of_entries() -> None:
    mapping = {f"메뉴{i}": f"메뉴 {i}번" for i in range(3000)} | {"메뉴": "차림표", "Menu": "메뉴판"}
    lexicon = Lexicon.from_mapping(mapping)
    assert len(lexicon) == 3002
    assert lexicon.apply("메뉴2999와 메뉴29, 메뉴는 Menu") == "메뉴 2999번와 메뉴 29번, 차림표는 메뉴판"
