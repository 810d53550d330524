"""The state page: every time, relatives as links, data as JSON, the full error, Retry, and
escaping of whatever a node or a user wrote."""

from __future__ import annotations

import html
import re

from state_manager import __version__
from tests.factories import ALPHA, BETA, NO_RETRY, Api, Worker, chain
from tests.state_manager.dashboard.conftest import Ui, text_of

LONG_ERROR = (
    "Traceback (most recent call last):\n"
    + "\n".join(f'  File "node.py", line {i}, in step_{i}' for i in range(40))
    + "\nValueError: the last line of a long error"
)


def state_url(state_id: str, ns: str = "testns") -> str:
    return f"/ui/ns/{ns}/states/{state_id}"


async def _failed_b(api: Api) -> tuple[str, str, str]:
    """A run whose `a` succeeded and whose `b` failed with LONG_ERROR: (run, a, b)."""
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = (await api.trigger("g", {"store": {"k": "v"}}))["run_id"]
    a = await Worker(api, "Alpha").execute([{"y": "from a"}])
    b, _ = await Worker(api, "Beta").fail(LONG_ERROR)
    return run_id, a["state_id"], b["state_id"]


async def test_the_state_page_shows_its_node_times_data_relatives_and_full_error(api: Api, ui: Ui) -> None:
    run_id, a, b = await _failed_b(api)

    page = await ui.page(state_url(b))
    text = html.unescape(text_of(page))

    assert 'id="state-status"' in page and 'data-status="ERRORED"' in page
    for words in (
        "State id " + b,
        "Node Beta in testns",
        "Graph g v",
        "Retry count 0",
        "Created 20",
        "Claimed 20",
    ):
        assert words in text, words
    assert "Ended 20" in text and "Lease expires" in text and "Deadline" in text and "ran " in text
    assert html.unescape(re.search(r'<pre class="error-full">(.*?)</pre>', page, re.S).group(1)) == LONG_ERROR
    assert '"x": "from a: from a"' in html.unescape(page)  # inputs as indented JSON
    assert f'href="/ui/ns/testns/states/{a}"' in page  # the parent
    assert f'href="/ui/ns/testns/runs/{run_id}"' in page
    assert "data-poll=" not in page

    parent = await ui.page(state_url(a))
    assert f'href="/ui/ns/testns/states/{b}"' in parent  # the child, from the parent's page
    assert '"y": "from a"' in html.unescape(parent) and "None: a root of the run." in parent
    assert 'action="/ui/ns/testns/states/' not in parent  # no Retry for a success


async def test_retry_turns_a_failed_state_into_a_new_attempt_once(api: Api, ui: Ui) -> None:
    run_id, _, b = await _failed_b(api)
    page = await ui.page(state_url(b))
    assert f'action="/ui/ns/testns/states/{b}/retry"' in page

    response = await ui.post(f"/ui/ns/testns/states/{b}/retry")

    assert response.status_code == 303
    new_url = response.headers["location"]
    new_page = await ui.page(new_url)
    assert "The state was retried" in new_page and 'data-status="CREATED"' in new_page
    assert "A retry of" in new_page and f'href="/ui/ns/testns/states/{b}"' in new_page
    assert "data-poll=" in new_page  # waiting for a runtime: the page updates itself
    old = await ui.page(state_url(b))
    assert "Retried as" in old and 'data-status="RETRY_CREATED"' in old
    assert f'action="/ui/ns/testns/states/{b}/retry"' not in old

    again = await ui.post(f"/ui/ns/testns/states/{b}/retry")
    assert again.status_code == 409 and "already being retried" in again.text
    await Worker(api, "Beta").execute()
    assert (await api.call("GET", f"/run/{run_id}"))["status"] == "SUCCESS"


async def test_retry_needs_this_servers_origin(api: Api, ui: Ui) -> None:
    _, _, b = await _failed_b(api)

    response = await ui.post(f"/ui/ns/testns/states/{b}/retry", headers={"origin": "http://evil.example"})

    assert response.status_code == 403
    assert 'data-status="ERRORED"' in await ui.page(state_url(b))


async def test_what_a_node_wrote_is_shown_as_text_never_as_markup(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    script = "<script>alert('owned')</script>"
    a = await Worker(api, "Alpha").execute([{"y": script}])
    b, _ = await Worker(api, "Beta").fail(f'<img src=x onerror="alert(1)"> {script}')

    pages = [
        await ui.page(state_url(a["state_id"])),
        await ui.page(state_url(b["state_id"])),
        await ui.page(f"/ui/ns/testns/runs/{run_id}?tab=states"),
    ]

    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert re.findall(r"<script\b[^>]*>", page) == [
            f'<script src="/ui/static/dashboard.js?v={__version__}" defer>'
        ]
    assert "&lt;script&gt;alert(" in pages[0] and "&lt;img src=x onerror=" in pages[1]


async def test_an_unknown_state_or_one_of_another_namespace_is_not_found(api: Api, ui: Ui) -> None:
    _, _, b = await _failed_b(api)

    assert "not found" in (await ui.get(state_url("6b0dc8eab6593ae014903784"), expect=404)).text
    assert (await ui.get(state_url(b, ns="otherns"), expect=404)).status_code == 404
    assert "Invalid state id" in (await ui.get(state_url("zzz"), expect=400)).text


async def test_the_state_page_shows_the_whole_error_of_the_attempt(api: Api, ui: Ui) -> None:
    """What our SDK's runtime sends with an errored report: the type, the traceback, the log lines."""
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    await api.trigger("g", {"store": {"k": "v"}})
    [state] = await api.claim("Alpha")
    details = {
        "type": "builtins.KeyError",
        "traceback": 'Traceback (most recent call last):\n  File "fetch.py", line 3\nKeyError: <missing>',
        "logs": ["INFO fetch: asking <b>example.org</b>", "WARNING fetch: no answer"],
    }
    await api.call("POST", f"/state/{state['state_id']}/errored", {"error": "'missing'", "details": details})

    page = await ui.page(state_url(state["state_id"]))
    text = html.unescape(text_of(page))

    assert "builtins.KeyError" in text
    assert 'File "fetch.py", line 3' in text and "KeyError: <missing>" in text
    assert "Log lines of this attempt (2)" in text and "WARNING fetch: no answer" in text
    assert "<b>example.org</b>" not in page  # escaped, as everything a node wrote
