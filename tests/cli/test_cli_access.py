"""`exosphere keys create | list | revoke` and `exosphere audit` against a real server."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli

pytestmark = pytest.mark.e2e


async def test_a_key_is_made_used_and_revoked_from_the_command_line(cli: Cli, ns: str) -> None:
    made = await cli("keys", "create", "ci-viewer", "--role", "viewer", "--namespace", ns, "-o", "json")
    assert made.code == 0 and made.json()["namespaces"] == [ns] and "Warning" not in made.stderr, made
    several = await cli(
        "keys", "create", "ci-admin", "--role", "admin", "--ns", "a", "--ns", "b", "-o", "json"
    )
    assert several.json()["namespaces"] == ["a", "b"], several
    key = made.json()["key"]
    printed = await cli("keys", "create", "ci-worker", "--role", "worker")  # the current namespace
    assert printed.code == 0 and "it is not shown again" in printed.stdout, printed
    assert printed.stdout.split()[1].startswith("exo_")

    listed = await cli("keys", "list")
    assert "ci-viewer" in listed.stdout and "ci-worker" in listed.stdout and key not in listed.stdout

    as_viewer = await cli("run", "list", env={"EXOSPHERE_API_KEY": key})
    assert as_viewer.code == 0, as_viewer
    refused = await cli("keys", "list", env={"EXOSPHERE_API_KEY": key})
    assert (
        refused.code == 1
        and "not allowed: Key 'ci-viewer' has role viewer, which may not list API keys" in refused.stderr
    ), refused

    revoked = await cli("keys", "revoke", made.json()["id"])
    assert revoked.code == 0 and "revoked" in revoked.stdout, revoked
    after = await cli("run", "list", env={"EXOSPHERE_API_KEY": key})
    assert after.code == 3 and "was revoked" in after.stderr, after


async def test_the_audit_log_says_who_did_what(cli: Cli, ns: str) -> None:
    made = await cli("keys", "create", "auditing", "--role", "viewer", "-o", "json")
    assert made.code == 0, made

    records = await cli("audit", "--action", "key.create", "--since", "1h", "-o", "json")
    table = await cli("audit", "--action", "key.create", "--limit", "1")

    assert records.code == 0, records
    assert records.json()[0]["key_name"] == "root" and records.json()[0]["status"] == 201
    assert "key.create" in table.stdout and "root" in table.stdout
    assert (await cli("audit", "--action", "no.such.action")).stdout.strip() == "no records"
    assert (await cli("audit", "--ns", "no-such-namespace")).stdout.strip() == "no records"
    mine = await cli("audit", "--by", "root", "--action", "key.create", "-o", "json")
    assert (
        mine.code == 0
        and "UserWarning" not in mine.stderr
        and {r["key_name"] for r in mine.json()} == {"root"}
    )
