"""Forking a run from the dashboard in Chromium, and comparing the fork with the original: a run of
a three-step pipeline (Say nodes of the suite's runtime, whose output follows their inputs) is
forked from its middle node with an edited prompt, runs to its end, and the compare page shows
what changed. A fork the server refuses shows its reason on the form."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import NS, Rest, log_in
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.browser

TOPIC = (
    "the tides of the Bay of Fundy, the highest in the world, and what the moon and the shape "
    "of the bay have to do with them"
)
PROMPT, EDITED = "Summarise in one line:", "Summarise in three words:"


def _say(identifier: str, inputs: dict[str, str], next_nodes: list[str]) -> dict[str, Any]:
    return {
        "node_name": "Say",
        "namespace": NS,
        "identifier": identifier,
        "inputs": inputs,
        "next_nodes": next_nodes,
    }


def _pipeline(rest: Rest) -> None:
    body = {
        "secrets": {},
        "nodes": [
            _say("fetch", {"prompt": "Article about", "text": "${{ store.topic }}"}, ["summarise"]),
            _say(
                "summarise",
                {"prompt": "${{ store.prompt }}", "text": "${{ fetch.outputs.said }}"},
                ["publish"],
            ),
            _say("publish", {"prompt": "Published:", "text": "${{ summarise.outputs.said }}"}, []),
        ],
        "store_config": {"required_keys": ["topic", "prompt"]},
        "retry_policy": {"max_retries": 0},
    }
    assert rest.call("PUT", "/graph/pipeline", body, expect=201)["validation_status"] == "VALID"


async def test_a_run_forked_from_a_node_with_an_edited_input_is_compared_with_the_original(
    page: Page, dashboard_server: LiveServer, rest: Rest
) -> None:
    _pipeline(rest)
    original = rest.trigger("pipeline", store={"topic": TOPIC, "prompt": PROMPT})
    await rest.wait_run(original, "SUCCESS")
    run_page = f"/ui/ns/{NS}/runs/{original}"
    await log_in(page, dashboard_server, run_page)

    # The node list offers a fork from each node; the form has the node's inputs and the store.
    await page.locator('tr[data-identifier="summarise"]').get_by_role("link", name="Fork from here").click()
    await expect(page.locator("h1")).to_contain_text("Fork from summarise")
    prompt = page.locator('input[name="input.prompt"]')
    await expect(prompt).to_have_value(PROMPT)
    await expect(page.locator('[name="input.text"]')).to_have_value(f"Article about {TOPIC}")
    await expect(page.locator('[name="store.topic"]')).to_have_value(TOPIC)
    await expect(page.locator('[name="store.prompt"]')).to_have_value(PROMPT)
    await expect(page.locator("input[name=graph_version][value=original]")).to_be_checked()
    await prompt.fill(EDITED)
    await page.screenshot(path="/tmp/fork-form.png", full_page=True)
    await page.click("button:has-text('Fork and run')")

    # The new run's page: what it was forked from, at which node; it runs to its end.
    await expect(page).to_have_url(re.compile(rf"/ui/ns/{NS}/runs/[0-9a-f-]{{36}}\?msg=forked$"))
    fork = page.url.split("/runs/")[1].split("?")[0]
    assert fork != original
    lineage = page.locator("#forked-from")
    await expect(lineage).to_contain_text("Forked from run")
    await expect(lineage).to_contain_text("summarise")
    await expect(lineage.locator(f'a[href="{run_page}"]')).to_be_visible()
    await expect(page.locator("#run-status .badge")).to_have_text("SUCCESS")
    assert rest.run(fork)["forked_from"] == {"run_id": original, "from": ["summarise"]}
    await page.screenshot(path="/tmp/fork-run.png", full_page=True)

    await page.click("a:has-text('Compare with the original')")
    await expect(page).to_have_url(re.compile(rf"/runs/{original}/compare/{fork}$"))

    # The summary counts, then the changed nodes first, each with the fields that differ.
    summary = page.locator("#summary")
    await expect(summary.locator("[data-change=changed]")).to_have_text("2 changed")
    await expect(summary.locator("[data-change=same]")).to_have_text("1 same")
    await expect(summary.locator("[data-change=only_a]")).to_have_text("0 only in A")
    rows = page.locator("table.diff tr[data-change]")
    assert await rows.evaluate_all(
        "rows => rows.map(r => r.dataset.identifier + ':' + r.dataset.change)"
    ) == [
        "summarise:changed",
        "publish:changed",
        "fetch:same",
    ]
    first = rows.first
    changed_prompt = first.locator('tr[data-path="inputs.prompt"]')
    await expect(changed_prompt.locator(".val-a")).to_have_text(PROMPT)
    await expect(changed_prompt.locator(".val-b")).to_have_text(EDITED)
    await expect(first.locator('tr[data-path="outputs.said"] .val-b')).to_contain_text(EDITED)
    await expect(page.locator("#same")).not_to_have_attribute("open", re.compile(".*"))  # listed, collapsed

    # A long value is shortened; its full text is one click away.
    said = rows.nth(1).locator('tr[data-path="outputs.said"] .val-b details')
    await expect(said.locator(".short")).to_have_text(re.compile(f"^Published: {EDITED} .*…$"))
    await expect(said.locator("pre")).to_be_hidden()
    await said.locator("summary").click()
    await expect(said.locator("pre")).to_have_text(f"Published: {EDITED} Article about {TOPIC}")

    # Both graphs are coloured by change.
    for side in ("a", "b"):
        graph = page.locator(f"#graph-{side} svg.dag")
        for identifier, change in (("fetch", "same"), ("summarise", "changed"), ("publish", "changed")):
            await expect(graph.locator(f'g[data-identifier="{identifier}"]')).to_have_attribute(
                "data-change", change
            )
    box = page.locator('#graph-b g[data-identifier="summarise"] rect.box')
    assert await box.evaluate("r => getComputedStyle(r).stroke") == "rgb(225, 111, 36)"  # orange
    await page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the shot
    await page.screenshot(path="/tmp/fork-compare.png", full_page=True)

    # The original lists its fork.
    await page.goto(run_page)
    await expect(page.locator(f'#forks a[href="/ui/ns/{NS}/runs/{fork}"]')).to_be_visible()
    await page.screenshot(path="/tmp/fork-original.png", full_page=True)


async def test_a_fork_the_server_refuses_shows_its_reason_on_the_form(
    page: Page, dashboard_server: LiveServer, rest: Rest
) -> None:
    body = {
        "secrets": {},
        "nodes": [
            {
                "node_name": "Pause",
                "namespace": NS,
                "identifier": "wait",
                "inputs": {"seconds": "${{ store.seconds }}"},
                "next_nodes": ["report"],
            },
            _say("report", {"prompt": "Waited", "text": "${{ wait.outputs.slept }}"}, []),
        ],
        "store_config": {"required_keys": ["seconds"]},
        "retry_policy": {"max_retries": 0},
    }
    rest.call("PUT", "/graph/brittle", body, expect=201)
    failed = rest.trigger("brittle", store={"seconds": "a while"})  # not a number: `wait` fails
    await rest.wait_run(failed, "FAILED")
    await log_in(page, dashboard_server, f"/ui/ns/{NS}/runs/{failed}")

    await page.locator('tr[data-identifier="report"]').get_by_role("link", name="Fork from here").click()
    await expect(page.locator(".fork-form")).to_contain_text("This node did not run in this run")
    await page.fill('input[name="input.prompt"]', "Waited for")
    await page.click("button:has-text('Fork and run')")

    alert = page.locator(".alert")
    await expect(alert).to_contain_text("The fork was refused.")
    await expect(alert).to_contain_text(
        f"Node wait did not succeed in run {failed} (ERRORED): fork from it or from before it"
    )
    await expect(page.locator('input[name="input.prompt"]')).to_have_value("Waited for")  # as typed
    assert rest.run(failed)["forks"] == []
    await page.screenshot(path="/tmp/fork-refused.png", full_page=True)
