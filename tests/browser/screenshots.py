"""Take the screenshots of docs/dashboard.md from the real pages: a server on a throwaway
embedded store, a runtime of our SDK with a small map-reduce graph, runs in every status, and
Debian's Chromium. Run from the repository root:

    .venv/bin/python -m tests.browser.screenshots [OUTPUT_DIR]     # default docs/images
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright
from pydantic import BaseModel

from exospherehost import BaseNode, Runtime
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.live_server import REPO_ROOT, start_server

NS = "demo"


class Fetch(BaseNode):
    class Inputs(BaseModel):
        topic: str

    class Outputs(BaseModel):
        documents: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(0.3)
        return self.Outputs(documents=" ".join(f"{self.inputs.topic}-doc-{i}" for i in range(1, 13)))


class Split(BaseNode):
    class Inputs(BaseModel):
        documents: str

    class Outputs(BaseModel):
        document: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(document=d) for d in self.inputs.documents.split()]


class Summarize(BaseNode):
    class Inputs(BaseModel):
        document: str
        pace: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(float(self.inputs.pace) * (1 + hash(self.inputs.document) % 5) / 3)
        if self.inputs.document.endswith("-doc-7") and "broken" in self.inputs.document:
            raise ValueError(
                f"could not summarize {self.inputs.document}: the model answered 429 Too Many Requests\n"
                "Traceback (most recent call last):\n"
                '  File "nodes/summarize.py", line 41, in execute\n'
                "    reply = await client.complete(prompt)\n"
                "RateLimitError: 429 Too Many Requests (retry after 20 s)"
            )
        return self.Outputs(summary=f"Summary of {self.inputs.document}")


class Report(BaseNode):
    class Inputs(BaseModel):
        summaries: str
        topic: str

    class Outputs(BaseModel):
        report: str

    async def execute(self) -> Outputs:
        return self.Outputs(report=f"{self.inputs.topic}: {len(json.loads(self.inputs.summaries))} summaries")


def _node(node: str, identifier: str, inputs: dict[str, str], **more: Any) -> dict[str, Any]:
    return {"node_name": node, "namespace": NS, "identifier": identifier, "inputs": inputs, **more}


DIGEST = {
    "secrets": {"OPENAI_API_KEY": "sk-never-shown"},
    "nodes": [
        _node("Fetch", "fetch", {"topic": "${{ store.topic }}"}, next_nodes=["split"]),
        _node("Split", "split", {"documents": "${{ fetch.outputs.documents }}"}, next_nodes=["summarize"]),
        _node(
            "Summarize",
            "summarize",
            {"document": "${{ split.outputs.document }}", "pace": "${{ store.pace }}"},
        ),
        _node(
            "Report",
            "report",
            {"summaries": "${{ summarize.outputs.summary[*] }}", "topic": "${{ store.topic }}"},
            unites={"identifier": "fetch"},
        ),
    ],
    "retry_policy": {"max_retries": 1, "strategy": "FIXED", "backoff_factor": 800},
    "store_config": {"required_keys": ["topic"], "default_values": {"pace": "0.3"}},
    "triggers": [{"type": "CRON", "value": {"expression": "0 6 * * *"}}],
}


async def _wait(http: httpx.AsyncClient, run_id: str, statuses: set[str], ns: str = NS) -> None:
    """Wait for the run to settle, watching its states (not the run, whose reads may finish it)."""
    deadline, moving = time.monotonic() + 60, {"CREATED", "QUEUED", "EXECUTED"}
    while True:
        page = (await http.get(f"/v0/namespace/{ns}/run/{run_id}/states?limit=500")).json()
        if page["states"] and not any(st["status"] in moving for st in page["states"]):
            await asyncio.sleep(0.5)  # a join or a retry may still come
            page = (await http.get(f"/v0/namespace/{ns}/run/{run_id}/states?limit=500")).json()
            if not any(st["status"] in moving for st in page["states"]):
                break
        assert time.monotonic() < deadline, f"run {run_id} did not settle"
        await asyncio.sleep(0.2)
    run = (await http.get(f"/v0/namespace/{ns}/run/{run_id}")).json()
    assert run["status"] in statuses, run


async def _trigger(http: httpx.AsyncClient, graph: str, ns: str = NS, **body: Any) -> str:
    response = await http.post(f"/v0/namespace/{ns}/graph/{graph}/trigger", json=body)
    response.raise_for_status()
    return str(response.json()["run_id"])


async def _scenario(http: httpx.AsyncClient) -> dict[str, str]:
    digest = await http.put(f"/v0/namespace/{NS}/graph/digest", json=DIGEST)
    assert digest.status_code == 201 and digest.json()["validation_status"] == "VALID", digest.text
    # A node a GPU runtime registered and then stopped serving: its work waits for nobody.
    gone = {
        "name": "Transcribe",
        "inputs_schema": {"properties": {"audio_url": {"type": "string"}}},
        "outputs_schema": {"properties": {"text": {"type": "string"}}},
        "secrets": ["WHISPER_TOKEN"],
    }
    registered = await http.put(
        f"/v0/namespace/{NS}/nodes/", json={"runtime_name": "gpu-worker", "nodes": [gone]}
    )
    assert registered.status_code == 200, registered.text
    transcribe = {
        "secrets": {"WHISPER_TOKEN": "never-shown-either"},
        "nodes": [_node("Transcribe", "transcribe", {"audio_url": "${{ store.url }}"})],
        "store_config": {"required_keys": ["url"]},
    }
    stored = await http.put(f"/v0/namespace/{NS}/graph/transcribe", json=transcribe)
    assert stored.status_code == 201, stored.text
    runs: dict[str, str] = {}
    for topic in ("invoices", "contracts", "tickets"):
        runs[topic] = await _trigger(http, "digest", store={"topic": topic, "pace": "0.2"})
        await _wait(http, runs[topic], {"SUCCESS"})
    runs["failed"] = await _trigger(http, "digest", store={"topic": "broken", "pace": "0.2"})
    await _wait(http, runs["failed"], {"FAILED"})
    runs["cancelled"] = await _trigger(http, "digest", store={"topic": "old"}, start_delay=3_600_000)
    await http.post(f"/v0/namespace/{NS}/run/{runs['cancelled']}/cancel")
    runs["audio"] = await _trigger(http, "transcribe", store={"url": "https://example.com/a.mp3"})
    runs["delayed"] = await _trigger(http, "digest", store={"topic": "weekly"}, start_delay=3_600_000)
    runs["running"] = await _trigger(http, "digest", store={"topic": "emails", "pace": "6"})
    await asyncio.sleep(3)  # some summaries done, others running, QUEUE_STALL_SECONDS passed
    return runs


async def _shoot(page: Page, path: str, name: str, out: Path, full: bool = False) -> None:
    await page.goto(path)
    await page.wait_for_load_state("networkidle")
    await page.screenshot(path=str(out / f"dashboard-{name}.png"), full_page=full)
    print(f"saved {out / f'dashboard-{name}.png'}")


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    server = start_server(QUEUE_STALL_SECONDS=2)
    try:
        runtime = Runtime(
            NS,
            "digest-runtime",
            [Fetch, Split, Summarize, Report],
            state_manager_uri=server.base_url,
            workers=16,
            key=server.api_key,
        )
        async with runtime, httpx.AsyncClient(base_url=server.base_url, headers=server.headers) as http:
            runs = await _scenario(http)
            failed_state = next(
                s["id"]
                for s in (
                    await http.get(f"/v0/namespace/{NS}/run/{runs['failed']}/states?status=ERRORED")
                ).json()["states"]
            )
            async with async_playwright() as driver:
                browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                context = await browser.new_context(
                    base_url=server.base_url, viewport={"width": 1360, "height": 860}
                )
                page = await context.new_page()
                await _shoot(page, "/ui/login", "login", out)
                await page.fill("input[name=api_key]", server.api_key)
                await page.click("button[type=submit]")
                ui = f"/ui/ns/{NS}"
                await _shoot(page, f"{ui}/runs", "runs", out)
                await _shoot(page, f"{ui}/runs/{runs['running']}", "run-graph", out)
                await _shoot(page, f"{ui}/runs/{runs['failed']}?tab=states", "run-states", out)
                await _shoot(page, f"{ui}/runs/{runs['failed']}?tab=timeline", "run-timeline", out, full=True)
                await _shoot(page, f"{ui}/states/{failed_state}", "state", out, full=True)
                await _shoot(page, f"{ui}/runs/{runs['delayed']}/cancel", "confirm-cancel", out)
                await _shoot(page, f"{ui}/graphs/digest", "graph", out, full=True)
                await _shoot(page, f"{ui}/nodes", "nodes", out, full=True)
                await browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "docs" / "images"))
