"""Comparing two runs of one graph, node by node."""

from __future__ import annotations

from fastapi import APIRouter

from state_manager.api.deps import Context
from state_manager.api.openapi_docs import errors
from state_manager.schemas.diffs import RunDiff
from state_manager.services import run_diff

router = APIRouter(tags=["runs"])


@router.get(
    "/run/{a}/diff/{b}",
    response_model=RunDiff,
    summary="Diff two runs of one graph",
    responses=errors(
        404,
        422,
        e404="One of the runs is not in this namespace",
        e422="The runs are runs of different graphs",
    ),
)
async def diff_runs(context: Context, namespace_name: str, a: str, b: str) -> RunDiff:
    """Run `a` against run `b`: one entry per node identifier and fan-out position (`position`:
    the output index of each fan-out above it, then its own), in the graph's node order. Each
    entry has `change` (`same`, `changed`, `only_a`, `only_b`), each run's state there (id,
    status, inputs, outputs; its latest attempt: retries and joins made again count once) and,
    for `changed`, the fields that differ (`{"path": "outputs.total", "a": ..., "b": ...}`,
    compared: `status` and every field of `inputs` and `outputs`). `summary` counts the
    entries of each change."""
    return await run_diff.diff(context, namespace_name, a, b)
