"""Two server processes behind a (notional) load balancer sharing one PostgreSQL: either one's API shows every call.

Stream tokens are keyed by the shared auth token, so a call whose webhook hit one process may stream to the other
(round-robin works, see docs/DEPLOYMENT.md); each process is scraped on its own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from multiprocess_support import ADMIN_TOKEN, AUTH_TOKEN, PG_ENV, launch, voice, wait_healthy
from sqlalchemy.engine import make_url

from hanmadi.net import free_port
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.caller import CallerConfig, place_call

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test (dropped afterwards)."""
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: in CI the multi-process test must run (see .ci/run)")
        pytest.skip(f"no PostgreSQL: set {PG_ENV}=postgresql+asyncpg://user:pass@host:5432/db to run this")
    url = make_url(base)
    name = f"hanmadi_mp_{uuid.uuid4().hex[:12]}"

    async def admin() -> asyncpg.Connection:
        return await asyncpg.connect(
            user=url.username, password=url.password, host=url.host, port=url.port or 5432, database=url.database
        )

    conn = await admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_two_processes_share_one_postgres_and_either_api_shows_every_call(
    tmp_path: Path, postgres_url: str
) -> None:
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"server-{i}.log" for i in range(2)]
    # started together: both migrate the empty database at once (an advisory lock serialises them)
    processes: list[subprocess.Popen[bytes]] = [
        launch(postgres_url, p, log) for p, log in zip(ports, logs, strict=True)
    ]
    try:
        for process, port, log in zip(processes, ports, logs, strict=True):
            await asyncio.to_thread(wait_healthy, process, port, log)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        # two calls on each process, at the same time
        configs = [
            CallerConfig(url=url, utterances=[voice(0.8)], auth_token=AUTH_TOKEN, turns=1)
            for url in urls
            for _ in range(2)
        ]
        # and one call whose webhook goes to process 0 while its media stream lands on process 1
        crossed_sid = "CA" + uuid.uuid4().hex
        form = {"CallSid": crossed_sid, "AccountSid": "AC" + "0" * 32}
        async with httpx.AsyncClient() as client:
            signature = tw.compute_signature(AUTH_TOKEN, f"{urls[0]}/twilio/voice", form)
            twiml = (
                await client.post(f"{urls[0]}/twilio/voice", data=form, headers={"X-Twilio-Signature": signature})
            ).text
        stream = ET.fromstring(twiml).find("./Connect/Stream")
        assert stream is not None
        token = next(p.get("value", "") for p in stream.findall("Parameter") if p.get("name") == "token")
        ws_url = urls[1].replace("http://", "ws://") + "/twilio/media"
        configs.append(
            CallerConfig(
                url=ws_url,
                utterances=[voice(0.8)],
                auth_token=AUTH_TOKEN,
                turns=1,
                call_sid=crossed_sid,
                params={"token": token},
            )
        )
        results = await asyncio.gather(*(place_call(c) for c in configs))
        assert all(r.turns and not r.turns[0].timed_out for r in results)
        sids = {r.call_sid for r in results}
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(headers=headers) as client:
            for url in urls:
                async with asyncio.timeout(20):  # each process's writer commits its calls' end
                    while True:
                        page = (await client.get(f"{url}/api/calls", params={"limit": 200})).json()
                        listed = {c["call_sid"]: c for c in page["items"]}
                        if sids <= listed.keys() and all(listed[s]["status"] == "completed" for s in sids):
                            break
                        await asyncio.sleep(0.2)
                detail = (await client.get(f"{url}/api/calls/{results[0].call_sid}")).json()
                assert len(detail["turns"]) == 2  # the greeting and the answer, whichever process served it
                metrics = (await client.get(f"{url}/metrics")).text
                assert "hanmadi_active_calls" in metrics  # every process is scraped on its own
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
