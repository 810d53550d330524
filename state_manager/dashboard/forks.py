"""Forking a run that has ended from one of its nodes: a form with that node's inputs and the
run's store filled in, and the POST that forks (services/forks.py) and opens the new run.

Only the values changed in the form are sent as overrides: an input left as it ran is resolved
again in the fork (so it follows a store value changed beside it, and each copy of a fan-out
keeps its own), and a store key left as it was is copied from the original anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from uuid import NAMESPACE_URL, uuid4, uuid5

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from state_manager.dashboard.catalog import placeholder_parts
from state_manager.dashboard.common import FINAL_RUN_STATUSES, context, html_errors, page
from state_manager.dashboard.render import render, ui_url
from state_manager.db.documents import GraphTemplate
from state_manager.domain.models import NodeTemplate
from state_manager.errors import BadRequest, Conflict, DomainError, NotFound, Unprocessable
from state_manager.schemas.runs import RunDetail
from state_manager.services import dashboard_reads, forks, run_views
from state_manager.services.context import AppContext
from state_manager.services.graphs import template_at, template_for

router = APIRouter()

FORM_LIMIT = 1024 * 1024  # bytes of a submitted form: inputs may be long (a join's list)
LONG = 80  # a value longer than this (or with a line break) is edited in a text area
VERSIONS = ("original", "current")
_CODES: list[tuple[type[DomainError], int]] = [(NotFound, 404), (Conflict, 409), (Unprocessable, 422)]


@dataclass
class Value:
    """One editable value of the form: an input of the node or a key of the store."""

    name: str
    ran: str  # the value it had in the run ("" when the node did not run)
    value: str  # what the form shows (what was typed, after a refusal)
    graph: str = ""  # an input's expression in the graph (`${{ a.outputs.y }}`)

    @property
    def long(self) -> bool:
        return len(self.value) > LONG or "\n" in self.value


@dataclass
class ForkForm:
    run: RunDetail
    node: str
    node_name: str
    inputs: list[Value]
    store: list[Value]
    ran: bool  # the node has a state in the run
    copies: int  # at how many places it ran (a fan-out's copies)
    original_version: int | None  # None: the version the run used is no longer kept
    current_version: int
    graph_version: str = "original"
    once: str = field(default_factory=lambda: uuid4().hex)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _node(graph: GraphTemplate | None, identifier: str) -> NodeTemplate | None:
    return next((n for n in graph.nodes if n.identifier == identifier), None) if graph else None


async def _form(ctx: AppContext, ns: str, run_id: str, identifier: str) -> ForkForm:
    """The form as the run left it (raises the error page's NotFound and Conflict)."""
    run = await run_views.run_detail(ns, run_id)
    if run.status not in FINAL_RUN_STATUSES:
        raise Conflict(f"Run {run_id} has not ended ({run.status}): fork it once it has ended")
    original = await template_at(ctx, ns, run.graph_name, run.graph_version)
    current = await template_for(ctx, ns, run.graph_name, run.graph_version)
    template = _node(original, identifier) or _node(current, identifier)
    if template is None:
        raise NotFound(f"Graph {run.graph_name} has no node {identifier!r}")
    found = await dashboard_reads.first_inputs(ns, run_id, identifier)
    ran_inputs, copies = found if found is not None else ({}, 0)
    names = [*template.inputs, *(name for name in ran_inputs if name not in template.inputs)]
    inputs = []
    for name in names:
        ran = _text(ran_inputs.get(name, ""))
        inputs.append(Value(name, ran, ran, _text(template.inputs.get(name, ""))))
    store = [Value(key, value, value) for key, value in sorted(run.store.items())]
    return ForkForm(
        run=run,
        node=identifier,
        node_name=template.node_name,
        inputs=inputs,
        store=store,
        ran=found is not None,
        copies=copies,
        original_version=original.version if original is not None else None,
        current_version=current.version if current is not None else run.graph_version,
        graph_version="original" if original is not None else "current",
    )


async def _fields(request: Request) -> dict[str, str]:
    """An urlencoded form body (what the page sends), without python-multipart."""
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise BadRequest(f"The form is too large (over {FORM_LIMIT // 1024} KiB)")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def _fill(form: ForkForm, sent: dict[str, str]) -> None:
    """Put what was typed into the form (to send it, or to show it again after a refusal)."""
    for item in form.inputs:
        item.value = sent.get(f"input.{item.name}", item.value).replace("\r\n", "\n")
    for item in form.store:
        item.value = sent.get(f"store.{item.name}", item.value).replace("\r\n", "\n")
    if sent.get("graph_version") in VERSIONS:
        form.graph_version = sent["graph_version"]
    form.once = sent.get("once", "")


def _request(form: ForkForm) -> forks.ForkRequest:
    """The fork asked: the node, and only the values that differ from what the run had."""
    inputs = {item.name: item.value for item in form.inputs if item.value != item.ran}
    store = {item.name: item.value for item in form.store if item.value != item.ran}
    return forks.ForkRequest([form.node], {form.node: inputs} if inputs else {}, store, form.graph_version)


def _new_run_id(ns: str, run_id: str, form: ForkForm, asked: forks.ForkRequest) -> str | None:
    """The same form sent twice (a double click, a reload) makes one fork: the new run's id comes
    from the form's one-time token and what it asks."""
    if not form.once:
        return None
    what = [ns, run_id, form.once, asked.starts, asked.inputs, asked.store, asked.graph_version]
    return str(uuid5(NAMESPACE_URL, json.dumps(what, sort_keys=True)))


async def _show(
    request: Request, ns: str, form: ForkForm, error: str | None = None, status_code: int = 200
) -> Response:
    values = await page(request, ns, "runs", form=form, run=form.run, error=error, parts=placeholder_parts)
    return render(request, "fork.html", values, status_code=status_code)


@router.get("/ns/{ns}/runs/{run_id}/fork")
@html_errors
async def fork_form(request: Request, ns: str, run_id: str, node: str = "") -> Response:
    return await _show(request, ns, await _form(context(request), ns, run_id, node))


@router.post("/ns/{ns}/runs/{run_id}/fork")
@html_errors
async def fork(request: Request, ns: str, run_id: str, node: str = "") -> Response:
    """Fork and open the new run; a refusal shows the form again, as typed, with the reason."""
    ctx = context(request)
    sent = await _fields(request)
    form = await _form(ctx, ns, run_id, node)
    _fill(form, sent)
    asked = _request(form)
    try:
        forked = await forks.fork_run(ctx, ns, run_id, asked, _new_run_id(ns, run_id, form, asked))
    except DomainError as exc:
        code = next((c for kind, c in _CODES if isinstance(exc, kind)), 400)
        return await _show(request, ns, form, exc.detail, code)
    return RedirectResponse(ui_url(ns, "runs", forked.run.run_id) + "?msg=forked", status_code=303)
