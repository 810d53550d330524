"""Forking a run from the dashboard (a form with the node's inputs and the run's store), a
fork's lineage on the run pages, and the page that compares two runs, over the in-process tier."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

from state_manager.dashboard import compare
from state_manager.schemas.diffs import NodeDiff
from tests.factories import NO_RETRY, Api, Json, graph, node, template
from tests.state_manager.dashboard.conftest import Ui, rows, run_url, svg_of, text_of
from tests.support import map_reduce as mapreduce

FETCH = node("Fetch", inputs=["url"], outputs=["body"])
SUMMARISE = node("Summarise", inputs=["prompt", "text"], outputs=["summary"])
PUBLISH = node("Publish", inputs=["text"], outputs=["url"])


def pipeline() -> Json:
    """fetch -> summarise (a prompt from the store, the fetched text) -> publish."""
    return graph(
        template("fetch", "Fetch", {"url": "https://example.com/a"}, ["summarise"]),
        template(
            "summarise",
            "Summarise",
            {"prompt": "${{ store.prompt }}", "text": "${{ fetch.outputs.body }}"},
            ["publish"],
        ),
        template("publish", "Publish", {"text": "${{ summarise.outputs.summary }}"}),
        store_config={"required_keys": ["prompt"]},
        retry_policy=NO_RETRY,
    )


async def _work(api: Api, *, fail_summarise: bool = False) -> None:
    """Play the runtimes until nothing is left: Summarise writes what it was asked."""
    while True:
        claimed = [(name, s) for name in ("Fetch", "Summarise", "Publish") for s in await api.claim(name)]
        if not claimed:
            return
        for name, state in claimed:
            inputs = state["inputs"]
            if name == "Fetch":
                await api.executed(state["state_id"], [{"body": "a long article"}])
            elif name == "Summarise" and fail_summarise:
                await api.errored(state["state_id"], "the model is down")
            elif name == "Summarise":
                await api.executed(state["state_id"], [{"summary": f"{inputs['prompt']}: {inputs['text']}"}])
            else:
                await api.executed(state["state_id"], [{"url": "https://blog/" + inputs["text"][:12]}])


async def _finished(api: Api, prompt: str = "In one line", *, fail: bool = False) -> str:
    await api.setup("pipe", pipeline(), FETCH, SUMMARISE, PUBLISH)
    run_id = str((await api.trigger("pipe", {"store": {"prompt": prompt}}))["run_id"])
    await _work(api, fail_summarise=fail)
    return run_id


def fork_url(run_id: str, identifier: str) -> str:
    return run_url(run_id, suffix="/fork") + "?node=" + quote(identifier)


def fields(page: str) -> dict[str, str]:
    """The text fields of a form: name -> value (inputs and text areas)."""
    found = {
        n: html.unescape(v)
        for n, v in re.findall(r'<input[^>]*type="(?:text|hidden)" name="([^"]+)" value="([^"]*)"', page)
    }
    for n, v in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>\n?(.*?)</textarea>', page, re.S):
        found[n] = html.unescape(v)
    return found


def new_run(response_location: str) -> str:
    """The run id of the page a fork redirected to."""
    match = re.fullmatch(r"/ui/ns/testns/runs/([0-9a-f-]{36})\?msg=forked", response_location)
    assert match, response_location
    return match.group(1)


async def _fork(ui: Ui, run_id: str, identifier: str, **changes: str) -> str:
    """Open the form, change `changes` (`input.prompt=...`, `store.x=...`), submit it; the new run."""
    form = await ui.page(fork_url(run_id, identifier))
    sent = {**fields(form), "graph_version": "original"}
    sent.update({name.replace("__", "."): value for name, value in changes.items()})
    response = await ui.post(fork_url(run_id, identifier), sent)
    assert response.status_code == 303, response.text[:2000]
    return new_run(response.headers["location"])


# ---------------------------------------------------------------- the fork


async def test_an_ended_runs_page_offers_a_fork_from_each_node_and_a_running_ones_does_not(
    api: Api, ui: Ui
) -> None:
    ended = await _finished(api)
    running = str((await api.trigger("pipe", {"store": {"prompt": "p"}}))["run_id"])

    page = await ui.page(run_url(ended))

    links = re.findall(r'href="([^"]+)"[^>]*>Fork from here<', page)
    assert [html.unescape(link) for link in links] == [
        fork_url(ended, n) for n in ("fetch", "summarise", "publish")
    ]
    assert "Fork from here" not in await ui.page(run_url(running))
    refused = await ui.get(fork_url(running, "fetch"), expect=409)
    assert "has not ended (PENDING): fork it once it has ended" in refused.text


async def test_the_fork_form_has_the_nodes_inputs_and_the_runs_store_filled_in(api: Api, ui: Ui) -> None:
    run_id = await _finished(api, "Say <b>it</b> briefly")

    page = await ui.page(fork_url(run_id, "summarise"))

    assert "Fork from" in page and "Summarise" in page
    assert fields(page) == {
        "input.prompt": "Say <b>it</b> briefly",
        "input.text": "a long article",
        "store.prompt": "Say <b>it</b> briefly",
    } | {"once": fields(page)["once"]}
    assert "&lt;b&gt;it&lt;/b&gt;" in page and "<b>it</b>" not in page  # user text is text
    assert '<span class="ph">${{ store.prompt }}</span>' in page  # where the value came from
    assert 'value="original" checked' in page and "v1, the version this run used" in page
    assert f'<form method="post" action="{html.escape(fork_url(run_id, "summarise"))}"' in page
    assert "Fork from here" not in page
    missing = await ui.get(fork_url(run_id, "nope"), expect=404)
    assert "Graph pipe has no node &#39;nope&#39;" in missing.text


async def test_forking_from_the_form_opens_the_new_run_which_runs_the_edited_input(api: Api, ui: Ui) -> None:
    original = await _finished(api)

    fork = await _fork(ui, original, "summarise", input__prompt="In three words")

    [summarise] = await api.claim("Summarise")
    assert (summarise["run_id"], summarise["inputs"]) == (
        fork,
        {"prompt": "In three words", "text": "a long article"},
    )
    assert await api.claim("Fetch") == []  # reused, not run again
    await api.executed(summarise["state_id"], [{"summary": "three words here"}])
    await _work(api)
    run = await api.call("GET", f"/run/{fork}")
    assert run["status"] == "SUCCESS" and run["forked_from"] == {"run_id": original, "from": ["summarise"]}

    page = await ui.page(run_url(fork) + "?msg=forked")
    assert "Forked: this new run reuses what the original computed" in page
    lineage = text_of(page)
    assert "Forked from run" in lineage and "at node summarise" in lineage
    compare = run_url(original, suffix=f"/compare/{fork}")
    assert f'<a class="btn" href="{compare}">Compare with the original</a>' in page
    assert f'href="{run_url(original)}"' in page
    listed = await ui.page(run_url(original))
    assert "1 fork of this run" in text_of(listed) and f'href="{run_url(fork)}"' in listed
    assert f'href="{compare}"' in listed


async def test_only_the_values_changed_are_sent_so_an_input_left_as_it_ran_follows_the_store(
    api: Api, ui: Ui
) -> None:
    original = await _finished(api, "In one line")

    fork = await _fork(ui, original, "summarise", store__prompt="In one word")

    [summarise] = await api.claim("Summarise")
    assert summarise["inputs"]["prompt"] == "In one word"  # resolved again from the new store
    assert (await api.call("GET", f"/run/{fork}"))["forked_from"]["from"] == ["summarise"]


async def test_the_same_form_sent_twice_makes_one_fork(api: Api, ui: Ui) -> None:
    original = await _finished(api)
    form = await ui.page(fork_url(original, "publish"))
    sent = {**fields(form), "graph_version": "original", "input.text": "edited"}

    first = await ui.post(fork_url(original, "publish"), sent)
    again = await ui.post(fork_url(original, "publish"), sent)  # a double click, a reload
    other = await ui.post(fork_url(original, "publish"), {**sent, "input.text": "edited again"})

    assert first.headers["location"] == again.headers["location"]
    assert other.headers["location"] != first.headers["location"]
    assert len((await api.call("GET", f"/run/{original}"))["forks"]) == 2


async def test_a_refused_fork_shows_the_form_again_as_typed_with_the_servers_reason(api: Api, ui: Ui) -> None:
    failed = await _finished(api, fail=True)  # summarise failed; publish never ran
    form = await ui.page(fork_url(failed, "publish"))
    assert "This node did not run in this run" in form
    assert fields(form)["input.text"] == ""  # nothing ran: empty, and not sent unless filled

    response = await ui.post(fork_url(failed, "publish"), {**fields(form), "input.text": "by hand <i>"})

    assert response.status_code == 422
    assert "The fork was refused." in response.text
    assert (
        f"Node summarise did not succeed in run {failed} (ERRORED): fork from it or from before it"
        in response.text
    )
    assert fields(response.text)["input.text"] == "by hand <i>" and "by hand &lt;i&gt;" in response.text
    assert (await api.call("GET", f"/run/{failed}"))["forks"] == []

    # Forking from the node that failed is what the message suggests, and it is accepted.
    fork = await _fork(ui, failed, "summarise")
    [again] = await api.claim("Summarise")
    assert again["run_id"] == fork


async def test_a_fork_from_another_origin_is_refused(api: Api, ui: Ui) -> None:
    original = await _finished(api)
    form = fields(await ui.page(fork_url(original, "summarise")))

    foreign = await ui.post(fork_url(original, "summarise"), form, headers={"origin": "http://evil.example"})

    assert foreign.status_code == 403
    assert (await api.call("GET", f"/run/{original}"))["forks"] == []


async def test_a_fan_out_forked_with_its_inputs_left_as_they_ran_keeps_each_copys_own(
    api: Api, ui: Ui
) -> None:
    await api.setup("mr", mapreduce.map_reduce("ALL_SUCCESS"), *mapreduce.NODES)
    original = (await api.trigger("mr"))["run_id"]
    await mapreduce.work(api, broken=None)

    form = await ui.page(fork_url(original, "square"))
    assert "This node ran 4 times (a fan-out)" in text_of(form)
    assert fields(form)["input.n"] == mapreduce.ITEMS[0]  # its first copy's
    await _fork(ui, original, "square")

    squares = await api.claim("Square")
    assert sorted(s["inputs"]["n"] for s in squares) == sorted(mapreduce.ITEMS)


# ---------------------------------------------------------------- the compare page


async def test_the_compare_page_lists_the_changed_nodes_first_with_what_differs(api: Api, ui: Ui) -> None:
    original = await _finished(api, "In one line")
    fork = await _fork(ui, original, "summarise", input__prompt="In <three> words")
    await _work(api)

    page = await ui.page(run_url(original, suffix=f"/compare/{fork}"))

    assert rows(page, "data-identifier") == ["summarise", "publish", "fetch"]
    assert rows(page, "data-change") == ["changed", "changed", "same"]
    text = text_of(page)
    assert "2 changed" in text and "0 only in A" in text and "0 only in B" in text and "1 same" in text
    changed = page.split('<tr data-identifier="summarise" data-change="changed">')[1]
    assert re.findall(r'data-path="([^"]+)"', changed.split("</table>")[0]) == [
        "inputs.prompt",
        "outputs.summary",
    ]
    assert '<span class="mono">In one line</span>' in changed
    assert '<span class="mono">In &lt;three&gt; words</span>' in changed
    assert "In <three>" not in page
    assert '<details id="same" class="same-list">' in page  # listed after, collapsed
    for side in ("a", "b"):
        svg = svg_of(page.split(f'id="graph-{side}"')[1])
        assert re.findall(r'data-identifier="([^"]+)" data-change="([^"]+)"', svg) == [
            ("fetch", "same"),
            ("summarise", "changed"),
            ("publish", "changed"),
        ]
        assert "changed: inputs.prompt, outputs.summary" in svg
    assert f'href="{run_url(fork)}?tab=states&amp;identifier=summarise"' in page  # a box: that run's states
    assert "data-poll=" not in page  # both ended: final
    assert "original" in text and "fork" in text


async def test_a_long_value_is_shortened_with_the_whole_of_it_one_click_away(api: Api, ui: Ui) -> None:
    long = "A prompt that goes on " * 12
    original = await _finished(api, long)
    fork = await _fork(ui, original, "summarise", input__prompt="short")
    await _work(api)

    page = await ui.page(run_url(original, suffix=f"/compare/{fork}"))

    shortened = re.search(r'<details class="long-value">.*?</details>', page, re.S)
    assert shortened, "no shortened value"
    assert f'<span class="mono short">{long[:120]}…</span>' in shortened.group(0)
    assert f'<pre class="inline">{long}</pre>' in shortened.group(0)


async def test_a_fan_out_compared_shows_each_copy_and_colours_a_mixed_node_changed(api: Api, ui: Ui) -> None:
    await api.setup("mr", mapreduce.map_reduce("ALL_SUCCESS"), *mapreduce.NODES)
    failed = (await api.trigger("mr"))["run_id"]
    await mapreduce.work(api, broken="2")
    fork = await _fork(ui, failed, "square")
    await mapreduce.work(api, broken=None)

    page = await ui.page(run_url(failed, suffix=f"/compare/{fork}"))

    changed = [
        i
        for i, c in zip(rows(page, "data-identifier"), rows(page, "data-change"), strict=True)
        if c == "changed"
    ]
    assert changed == ["square", "sum"]
    copies = re.findall(r'data-change="(\w+)">\s*<td class="node-cell">square <span[^>]*>([^<]*)<', page)
    assert copies[0] == ("changed", "[0, 2, 0]")  # which copy of the fan-out changed: the one that failed
    assert sorted(copies[1:]) == [("same", "[0, 0, 0]"), ("same", "[0, 1, 0]"), ("same", "[0, 3, 0]")]
    svg = svg_of(page)
    assert 'data-identifier="square" data-change="changed"' in svg and "1 changed · 3 same" in svg
    assert 'data-identifier="start" data-change="same"' in svg


async def test_comparing_runs_of_two_graphs_or_an_unknown_run_says_why(api: Api, ui: Ui) -> None:
    original = await _finished(api)
    await api.setup("mr", mapreduce.map_reduce("ALL_SUCCESS"), *mapreduce.NODES)
    other = (await api.trigger("mr"))["run_id"]

    unrelated = await ui.get(run_url(original, suffix=f"/compare/{other}"), expect=400)
    assert "only runs of one graph can be compared" in unrelated.text
    unknown = await ui.get(run_url(original, suffix="/compare/nope"), expect=404)
    assert "Run nope not found" in unknown.text


def test_a_nodes_colour_comes_from_the_change_of_its_entries() -> None:
    def entry(change: str, path: str = "outputs.y") -> NodeDiff:
        side = {"state_id": "s", "status": "SUCCESS", "inputs": {}, "outputs": {}}
        fields = [{"path": path, "a": 1, "b": 2}] if change == "changed" else []
        return NodeDiff.model_validate(
            {
                "identifier": "n",
                "position": [0],
                "change": change,
                "a": None if change == "only_b" else side,
                "b": None if change == "only_a" else side,
                "fields": fields,
            }
        )

    assert compare.node_change([]) == "none" and compare.node_note([]) == "ran in neither run"
    assert compare.node_change([entry("same"), entry("same")]) == "same"
    assert compare.node_change([entry("only_b")]) == "only_b"
    assert compare.node_note([entry("only_b")]) == "ran only in run B"
    assert compare.node_change([entry("same"), entry("only_a")]) == "changed"  # a mix
    assert compare.node_note([entry("changed")]) == "changed: outputs.y"
    assert compare.node_note([entry("changed"), entry("same"), entry("same")]) == "1 changed · 2 same"
