"""The load server process (``python -m hanmadi.bench.load --serve-port P``): the real app under uvicorn with
simulated providers on the seed's latency profile, recording every call to SQLite unless told not to."""

from __future__ import annotations

import asyncio
from typing import Any

from hanmadi.bench.load.sampler import loop_lag as measure_loop_lag
from hanmadi.bench.strategies import SEED_SCENARIO, Scenario, scenario_llm, scenario_tts


def load_providers(scenario: Scenario = SEED_SCENARIO) -> Any:
    """Simulated STT, an LLM that streams the scenario's sentences at their times, a TTS with its latencies."""
    from hanmadi.providers.simulated import SimulatedSTT
    from hanmadi.server import Providers

    return Providers(stt=SimulatedSTT(), llm=scenario_llm(scenario), tts=scenario_tts(scenario))


def serve(port: int, *, auth_token: str, max_calls: int, log_file: str | None, database_url: str | None = None) -> None:
    """Run the load server on 127.0.0.1:``port`` until SIGTERM/SIGINT (the ``--serve-port`` entry point).

    With ``database_url`` every call is recorded there (the recorder on, as in production); without, nothing is.

    ``GET /load/loop-lag`` answers its event loop's lag so far: a 10 ms timer's lateness (ms) and when (monotonic),
    and which event loop it is (``uvloop`` or ``asyncio``: the one ``hanmadi serve`` would run).
    """
    import logging

    from hanmadi.config import Settings
    from hanmadi.limits import uvicorn_config
    from hanmadi.server import DrainingServer, create_app

    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, handlers=[handler], format=log_format)
    settings = Settings(
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        twilio_auth_token=auth_token,
        stt="simulated",
        llm="simulated",
        tts="simulated",
        max_calls=max_calls,
        first_clause_split=False,  # sentence boundaries are the scenario's
        drain_timeout_s=2.0,
        _env_file=None,
    )
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    app = create_app(settings, providers=load_providers(), use_recorder=database_url is not None)
    lags: list[float] = []
    at: list[float] = []

    @app.get("/load/loop-lag")
    async def loop_lag() -> dict[str, object]:
        return {"loop_lag_ms": lags, "at": at, "loop": type(asyncio.get_running_loop()).__module__.split(".")[0]}

    config = uvicorn_config(
        app, settings, host="127.0.0.1", port=port, log_level="warning", lifespan="on", backlog=4096
    )
    server = DrainingServer(config, app.state.hanmadi, freeze_heap=True)

    async def main() -> None:
        stop = asyncio.Event()
        monitor = asyncio.create_task(measure_loop_lag(stop, lags, at))
        try:
            await server.serve()
        finally:
            stop.set()
            await monitor

    # the event loop ``hanmadi serve`` runs on (uvicorn's choice: uvloop where installed), not asyncio's default
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())
