"""The keys and the audit log (issue 19), for the root key or an admin of all namespaces (the
access check refuses them to anyone else): list keys, make one (the key itself shown on the
answer, once), revoke one after a confirmation; read the audit log newest first, filtered, a page
at a time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from state_manager.api.access import AUDITED
from state_manager.clock import now_ms
from state_manager.dashboard import access
from state_manager.dashboard.common import context, form_fields, html_errors, page
from state_manager.dashboard.render import render
from state_manager.dashboard.runs import parse_time
from state_manager.domain.access import ALL_NAMESPACES, Role
from state_manager.errors import BadRequest, NotFound
from state_manager.services import audit, keys

router = APIRouter()

ROLES = tuple(role.value for role in Role)
AUDIT_PER_PAGE = 50
# What the audit log's action filter offers: the API's audited calls and the dashboard's own.
AUDIT_ACTIONS = sorted(
    {
        *AUDITED.values(),
        *(rule.audited for rule in access.RULES.values() if rule.audited),
        "dashboard.login",
        "dashboard.login_failed",
    }
)
EMPTY_FORM = {"name": "", "role": Role.VIEWER.value, "namespaces": "", "expires": ""}


def key_status(doc: dict[str, Any], now: int) -> str:
    """`revoked`, `expired` or `active`."""
    if doc.get("revoked_ms") is not None:
        return "revoked"
    if doc.get("expires_ms") is not None and doc["expires_ms"] <= now:
        return "expired"
    return "active"


def namespaces_of(text: str) -> list[str]:
    """The form's namespaces: comma-separated, or `*` for all."""
    return [name.strip() for name in text.split(",") if name.strip()]


async def _keys_page(
    request: Request,
    *,
    form: dict[str, str] = EMPTY_FORM,
    error: str | None = None,
    created: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    values = await page(
        request,
        "",
        "keys",
        keys=await keys.list_keys(),
        roles=ROLES,
        form=form,
        error=error,
        created=created,
        status=key_status,
        now=now_ms(),
        all_namespaces=ALL_NAMESPACES,
    )
    return render(request, "keys.html", values, status_code=status_code)


@router.get("/keys")
@html_errors
async def keys_page(request: Request) -> Response:
    return await _keys_page(request)


@router.post("/keys")
@html_errors
async def create_key(request: Request) -> Response:
    """Make a key and show it, this once; a refusal shows the form again, as typed, with why."""
    sent = await form_fields(request)
    form = {name: sent.get(name, "").strip() for name in EMPTY_FORM}
    me = access.principal(request)
    assert me is not None  # the access check let only an admin of all namespaces (or root) here
    try:
        expires = parse_time(form["expires"], "Expires")
        if expires is not None and expires <= now_ms():
            raise BadRequest("The expiry is in the past: a key must expire later than now")
        namespaces = namespaces_of(form["namespaces"])
        doc, key = await keys.create(me, form["name"], form["role"], namespaces, expires)
    except BadRequest as exc:
        return await _keys_page(request, form=form, error=exc.detail, status_code=400)
    request.state.audit["target"] = {"key": doc["key_id"]}  # marked by the access check
    return await _keys_page(request, created={"doc": doc, "key": key})


async def _key(key_id: str) -> dict[str, Any]:
    found = next((doc for doc in await keys.list_keys() if doc["key_id"] == key_id), None)
    if found is None:
        raise NotFound(f"API key {key_id} not found")
    return found


@router.get("/keys/{key_id}/revoke")
@html_errors
async def revoke_page(request: Request, key_id: str) -> Response:
    """The confirmation step of Revoke: a page with the form that does it."""
    doc = await _key(key_id)
    if doc.get("revoked_ms") is not None:
        return RedirectResponse("/ui/keys", status_code=303)
    return render(request, "key_revoke.html", await page(request, "", "keys", key=doc))


@router.post("/keys/{key_id}/revoke")
@html_errors
async def revoke_key(request: Request, key_id: str) -> Response:
    await keys.revoke(context(request), key_id)
    return RedirectResponse("/ui/keys?msg=key-revoked", status_code=303)


@router.get("/audit")
@html_errors
async def audit_page(
    request: Request,
    namespace: str = "",
    action: str = "",
    key: str = "",
    since: str = "",
    cursor: str | None = None,
) -> Response:
    f = {"namespace": namespace.strip(), "action": action.strip(), "key": key.strip(), "since": since.strip()}
    records, next_cursor = await audit.read(
        namespace=f["namespace"] or None,
        action=f["action"] or None,
        key=f["key"] or None,
        since_ms=parse_time(f["since"], "Since"),
        limit=AUDIT_PER_PAGE,
        cursor=cursor or None,
    )
    values = await page(
        request,
        "",
        "audit",
        records=records,
        next_cursor=next_cursor,
        first_page=cursor is None,
        actions=AUDIT_ACTIONS,
        key_names=sorted({"root", *(doc["name"] for doc in await keys.list_keys())}),
        f=f,
        filtered=any(f.values()),
    )
    return render(request, "audit.html", values)
