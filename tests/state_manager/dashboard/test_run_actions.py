"""Cancel and Retry failed from the run page: a confirmation page first, then a POST that
needs the session and this server's origin."""

from __future__ import annotations

import pytest

from tests.factories import ALPHA, BETA, NO_RETRY, Api, Worker, chain
from tests.state_manager.dashboard.conftest import Ui, run_url, text_of
from tests.support import map_reduce as mapreduce


async def test_cancel_asks_first_then_cancels_the_run(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"start_delay": 60_000}))["run_id"]
    page = await ui.page(run_url(run_id))
    assert f'href="{run_url(run_id, suffix="/cancel")}"' in page and 'data-status="PENDING"' in page

    confirm = await ui.page(run_url(run_id, suffix="/cancel"))
    assert (
        "Cancel this run?" in confirm
        and f'<form method="post" action="{run_url(run_id, suffix="/cancel")}"' in confirm
    )
    assert (await api.call("GET", f"/run/{run_id}"))["status"] == "PENDING"  # the GET changed nothing

    response = await ui.post(run_url(run_id, suffix="/cancel"))

    assert response.status_code == 303 and response.headers["location"] == run_url(run_id) + "?msg=cancelled"
    after = await ui.page(response.headers["location"])
    assert "The run was cancelled." in after and 'data-status="CANCELLED"' in after
    assert "Cancel run" not in text_of(after) and "data-poll=" not in after
    assert (await api.call("GET", f"/run/{run_id}"))["counts"] == {"CANCELLED": 1}


async def test_cancel_from_another_origin_or_of_an_ended_run_is_refused(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    ended = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    assert (await api.call("GET", f"/run/{ended}"))["status"] == "SUCCESS"
    late = (await api.trigger("g"))["run_id"]

    foreign = await ui.post(run_url(late, suffix="/cancel"), headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403 and (await api.call("GET", f"/run/{late}"))["status"] == "PENDING"
    conflict = await ui.post(run_url(ended, suffix="/cancel"))
    assert conflict.status_code == 409 and "has already ended" in conflict.text


async def test_retry_failed_asks_first_then_retries_each_failed_state_once(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").fail("broken")
    page = await ui.page(run_url(run_id))
    assert "Retry failed (1)" in page and 'data-status="FAILED"' in page

    confirm = await ui.page(run_url(run_id, suffix="/retry-failed"))
    assert "Retry the failed states?" in confirm and "Retry 1 failed state" in confirm
    assert (await api.call("GET", f"/run/{run_id}"))["status"] == "FAILED"

    foreign = await ui.post(
        run_url(run_id, suffix="/retry-failed"), headers={"referer": "http://evil.example/"}
    )
    assert foreign.status_code == 403 and (await api.call("GET", f"/run/{run_id}"))["status"] == "FAILED"

    response = await ui.post(run_url(run_id, suffix="/retry-failed"))
    assert response.headers["location"] == run_url(run_id) + "?msg=retried&n=1"
    after = await ui.page(response.headers["location"])
    assert "Failed states were retried: 1 new attempt." in after and "data-poll=" in after
    assert "Retry failed (" not in after

    again = await ui.post(run_url(run_id, suffix="/retry-failed"))
    assert again.headers["location"].endswith("?msg=retried-none")
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    assert 'data-status="SUCCESS"' in await ui.page(run_url(run_id))


@pytest.mark.parametrize("strategy", ["ALL_SUCCESS", "ALL_DONE"])
async def test_retry_failed_repairs_a_map_reduce_to_a_clean_runs_result(
    api: Api, ui: Ui, strategy: str
) -> None:
    await api.setup("mr", mapreduce.map_reduce(strategy), *mapreduce.NODES)
    run_id = (await api.trigger("mr"))["run_id"]
    await mapreduce.work(api, broken="2")
    assert 'data-status="FAILED"' in await ui.page(run_url(run_id))

    response = await ui.post(run_url(run_id, suffix="/retry-failed"))
    await mapreduce.work(api, broken=None)  # the node is fixed

    assert response.headers["location"] == run_url(run_id) + "?msg=retried&n=1"
    assert 'data-status="SUCCESS"' in await ui.page(run_url(run_id))
    assert await mapreduce.result(api, run_id) == ("SUCCESS", [mapreduce.CLEAN_TOTAL])


async def test_an_unknown_action_leads_back_to_the_run(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]

    response = await ui.get(run_url(run_id, suffix="/explode"), expect=303)

    assert response.headers["location"] == run_url(run_id)
