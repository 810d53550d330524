"""Stopping the server while runtimes hold open long-polls: they are answered at once (empty),
the server exits within a few seconds, and its output holds no traceback."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from tests.support.live_server import start_server

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_stop_answers_open_long_polls_and_exits_cleanly(sig: signal.Signals) -> None:
    server = start_server()
    try:
        headers = {"x-api-key": server.api_key}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as client:
            body = {"nodes": ["Anything"], "batch_size": 4, "wait_ms": 30_000}
            polls = [
                asyncio.create_task(client.post("/v0/namespace/ns/states/enqueue", json=body))
                for _ in range(3)
            ]
            await asyncio.sleep(0.5)  # the polls are open on the server
            assert not any(poll.done() for poll in polls)

            server.process.send_signal(sig)
            answers = await asyncio.wait_for(asyncio.gather(*polls), 10)  # far below the polls' 30 s

        assert [(a.status_code, a.json()["states"]) for a in answers] == [(200, [])] * 3
        server.process.wait(timeout=10)
        output = server.log_text()
        assert "Traceback" not in output, output
    finally:
        server.stop()
