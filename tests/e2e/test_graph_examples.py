"""The examples of docs/graphs.md are files; this runs each against a real server and checks
what it returns, and checks that the code the docs quote is still in those files."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from examples.graphs import (
    chain,
    cron,
    fan_out,
    flow_control,
    fork_and_compare,
    join,
    manual_retry,
    map_reduce,
    signals,
    store_and_retry,
    validation,
)
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


async def test_chain_resolves_placeholders_in_both_trigger_forms(sdk_env: LiveServer) -> None:
    assert await chain.main() == {
        "template": "[HELLO] HELLO, WORLD!",
        "head": "[HI] HI, WORLD!",
        "seed": "[HEY] HEY, WORLD!",
    }


async def test_fan_out_runs_one_branch_per_output(sdk_env: LiveServer) -> None:
    assert await fan_out.main() == {
        "split_states": 3,
        "reports": ["one=3", "three=5", "two=3"],
        "statuses": ["SUCCESS"],
    }


async def test_map_reduce_sums_the_squares_in_order(sdk_env: LiveServer) -> None:
    result = await map_reduce.main()
    assert result == {"run": "SUCCESS", "squares": 4, "total": {"total": "30", "squares": "16 1 9 4"}}


async def test_join_fires_once_and_never_hangs(sdk_env: LiveServer) -> None:
    summary = "Weekly Review: every branch finished"
    result = await join.main()
    assert result["all_success_ok"] == {
        "run": "SUCCESS",
        "checks": ["SUCCESS"] * 3,
        "reports": [("SUCCESS", summary)],
    }
    assert result["all_success_failed"] == {
        "run": "FAILED",
        "checks": ["ERRORED", "SUCCESS", "SUCCESS"],
        "reports": [
            (
                "CANCELLED",
                "Join report (unites plan, ALL_SUCCESS) cannot run: states below plan failed: check",
            )
        ],
    }
    assert result["all_done_failed"] == {
        "run": "FAILED",
        "checks": ["ERRORED", "SUCCESS", "SUCCESS"],
        "reports": [("SUCCESS", summary)],
    }


async def test_store_values_and_an_automatic_retry(sdk_env: LiveServer) -> None:
    result = await store_and_retry.main()
    assert result["quote_inputs"] == {"customer": "ada", "amount": "25", "currency": "EUR"}
    assert result["charge_attempts"] == [
        ("RETRY_CREATED", 0, "payment gateway timed out"),
        ("SUCCESS", 1, None),
    ]
    assert result["receipt"] == "charged 25 EUR for ada (EUR account)"
    missing = result["missing_store_key"]
    assert missing is not None
    assert missing == "400: Missing store keys: ['customer']"


async def test_manual_retry_reruns_a_failed_state_once(sdk_env: LiveServer) -> None:
    assert await manual_retry.main() == {
        "failed": ("ERRORED", "blog API is down"),
        "run_before": "FAILED",
        "retry_answer": (200, "CREATED"),
        "states": [("RETRY_CREATED", None), ("SUCCESS", "https://blog.example/hello")],
        "run_after": "SUCCESS",
        "duplicate_retry": 409,
    }


async def test_signals_requeue_and_prune(sdk_env: LiveServer) -> None:
    assert await signals.main() == {
        "fetch_calls": 2,
        "fetch_states": 3,
        "keep": [("PRUNED", "spam"), ("SUCCESS", ""), ("SUCCESS", "")],
        "published": ["HELLO", "SEE YOU"],
        "run": "SUCCESS",
    }


async def test_cron_trigger_is_stored_and_a_bad_expression_refused(sdk_env: LiveServer) -> None:
    assert await cron.main() == {
        "triggers": [{"type": "CRON", "value": {"expression": "0 9 * * 1-5"}}],
        "invalid_expression": 422,
    }


async def test_validation_at_upsert_and_on_registration(sdk_env: LiveServer) -> None:
    result = await validation.main()
    assert result["diamond"][0] == 400
    assert "Node merge has more than one parent (left, right)" in result["diamond"][1]
    assert result["not_an_ancestor"][0] == 400
    assert "references left, which is not an ancestor of right" in result["not_an_ancestor"][1]
    status, errors = result["before_registration"]
    assert status == "INVALID"
    assert len(errors) == 1
    assert re.fullmatch(r"Node Resize in namespace images-\w+ does not exist\.", errors[0])
    assert result["trigger_invalid"] == 400
    assert result["after_registration"] == "VALID"


async def test_fork_and_compare_reuses_the_fetch_and_shows_what_the_new_prompt_changed(
    sdk_env: LiveServer,
) -> None:
    assert await fork_and_compare.main() == {
        "reused": 1,
        "calls": {"fetch": 1, "draft": 2, "score": 2},  # the fork fetched nothing
        "summary": "Explain to a ten-year-old: three papers on tides",
        "changes": {"same": 1, "changed": 2, "only_a": 0, "only_b": 0},
        "changed": [
            ("draft", ["inputs.prompt", "outputs.summary"]),
            ("score", ["inputs.summary", "outputs.words"]),
        ],
    }


QUOTE = re.compile(r"<!-- quoted from (?P<path>\S+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)


@pytest.mark.parametrize("doc", ["docs/graphs.md", "docs/sdk.md", "docs/flow-control.md"])
def test_the_docs_quote_the_example_files_verbatim(doc: str) -> None:
    text = (ROOT / doc).read_text()
    quotes = list(QUOTE.finditer(text))
    assert quotes, f"{doc} quotes no example file"
    assert len(quotes) == text.count("<!-- quoted from"), f"{doc}: a quote marker is not followed by code"
    for quote in quotes:
        source = (ROOT / quote["path"]).read_text()
        # A quote may be dedented from the function body it comes from.
        found = any(textwrap.indent(quote["code"], " " * depth) in source for depth in range(0, 17, 4))
        assert found, f"{doc}: this block is not in {quote['path']}:\n{quote['code']}"


async def test_flow_control_keeps_each_key_to_its_limit_and_tenants_fair(sdk_env: LiveServer) -> None:
    result = await flow_control.main()
    peak = result["llm_peak"]
    assert peak["team-a"] == 2 and peak["team-b"] <= 2  # at most two at once per API key, both used
    assert result["tenant_peak"] == {"tenant:big": 1, "tenant:small": 1}  # one run per tenant at once
    assert result["small_before_big_3"] is True  # the small tenant did not wait behind the big one
    assert result["big_in_order"] == ["big-1", "big-2", "big-3"]  # a tenant's runs in order
