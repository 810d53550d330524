"""The timeline of a large run: one row per node (identifier) instead of one per attempt.

A fan-out of 200 branches draws 200 near-identical bars; what a reader wants from it is when
the node's work began, how it spread, and when it ended. Per node (`NodeSpan`):
  first due    when its first state was due (the row's waiting bar starts there);
  first claim  when a runtime first claimed one of its states (its spread bar starts there);
  median end, p95 end  when half / 95 % of its ended states had ended (markers on the bar);
  last end     when its last state ended (or now, while some still wait or run);
and the median and p95 run time (claim to end) of its attempts. Rows go in time order.

The spread bar is coloured by what the node's work mostly is (done, running, waiting; failed
only when nothing succeeded), and each failed (or retried) attempt is a tick where it ended: 2
failures among 200 branches show as 2 ticks, not as a red row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from state_manager.dashboard.dag import GROUPS
from state_manager.dashboard.render import duration, status_label
from state_manager.dashboard.timeline import MOVING, PAD, ROW_H, Frame, due_at, ended_at, open_svg
from state_manager.domain.status import StateStatus, node_status
from state_manager.schemas.runs import StateView

TIMES = "\u00d7"  # the multiplication sign: a row reads "summarize", the sign, "200"


def percentile(values: Sequence[int], q: float) -> int | None:
    """The nearest-rank `q` percentile (0 < q <= 1) of `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class NodeSpan:
    identifier: str
    node_name: str
    count: int  # its states (each attempt counts)
    first_due: int
    first_claim: int | None
    median_end: int | None
    p95_end: int | None
    last_end: int | None  # None until one ends
    until: int  # where its bar ends: the last end, or now while some still wait or run
    median_run: int | None  # ms from claim to end, over its ended attempts that were claimed
    p95_run: int | None
    moving: int  # still waiting or running
    counts: Mapping[str, int] = field(default_factory=dict)
    failures: tuple[tuple[int, str], ...] = ()  # (end, "failed" | "retried") of each such attempt

    @property
    def status(self) -> str:
        """NOT_STARTED, PENDING, RUNNING, SUCCESS, FAILED or CANCELLED, as on the graph."""
        return node_status({StateStatus(s): n for s, n in self.counts.items()})

    @property
    def bar(self) -> str:
        """The colour of its spread: running or waiting while it moves, else done when some
        succeeded, else failed or cancelled."""
        groups = {GROUPS.get(status, "waiting") for status in self.counts}
        for group in ("running", "waiting", "done", "failed", "retried"):
            if group in groups:
                return "failed" if group == "retried" else group
        return "cancelled"

    @property
    def failed(self) -> int:
        return sum(1 for _, kind in self.failures if kind == "failed")

    @property
    def start(self) -> int:
        """Where it sits in time: its first claim (its first due time if none was claimed)."""
        return self.first_claim if self.first_claim is not None else self.first_due


def span_of(states: Sequence[StateView], now: int) -> NodeSpan:
    """The span of one node's states (at least one)."""
    ends = sorted(e for e in map(ended_at, states) if e is not None)
    claims = [s.claimed_ms for s in states if s.claimed_ms is not None]
    runs = [
        end - s.claimed_ms for s in states if s.claimed_ms is not None and (end := ended_at(s)) is not None
    ]
    moving = sum(1 for s in states if s.status in MOVING)
    counts: dict[str, int] = {}
    for s in states:
        counts[s.status] = counts.get(s.status, 0) + 1
    first_due = min(map(due_at, states))
    last_end = ends[-1] if ends else None
    failures = sorted(
        (end, GROUPS[s.status])
        for s in states
        if GROUPS.get(s.status) in {"failed", "retried"} and (end := ended_at(s)) is not None
    )
    return NodeSpan(
        identifier=states[0].identifier,
        node_name=states[0].node_name,
        count=len(states),
        first_due=first_due,
        first_claim=min(claims) if claims else None,
        median_end=percentile(ends, 0.5),
        p95_end=percentile(ends, 0.95),
        last_end=last_end,
        until=now if moving else (last_end if last_end is not None else first_due),
        median_run=percentile(runs, 0.5),
        p95_run=percentile(runs, 0.95),
        moving=moving,
        counts=dict(sorted(counts.items())),
        failures=tuple(failures),
    )


def group_by_node(states: Sequence[StateView], now: int) -> list[NodeSpan]:
    """One span per identifier, in time order: by first claim (else first due), then name."""
    by_node: dict[str, list[StateView]] = {}
    for state in states:
        by_node.setdefault(state.identifier, []).append(state)
    spans = [span_of(group, now) for group in by_node.values()]
    return sorted(spans, key=lambda s: (s.start, s.identifier))


def _label(span: NodeSpan) -> str:
    count = f" {TIMES}{span.count}"
    room = 28 - len(count)
    name = span.identifier if len(span.identifier) <= room else span.identifier[: room - 1] + "…"
    return name + count


def tooltip(span: NodeSpan, origin: int) -> str:
    """What hovering a row says: every figure of the node, times from the axis's zero."""

    def at(t: int | None) -> str:
        return "—" if t is None else f"+{duration(t - origin)}"

    lines = [
        f"{span.identifier} ({span.node_name}): {span.count} state{'' if span.count == 1 else 's'}",
        f"first claim {at(span.first_claim)} · median end {at(span.median_end)} · "
        f"p95 end {at(span.p95_end)} · last end {at(span.last_end)}",
        f"run time: median {duration(span.median_run)} · p95 {duration(span.p95_run)}",
    ]
    lines.append(", ".join(f"{n} {status_label(status)}" for status, n in span.counts.items()))
    return "\n".join(lines)


def _marker(frame: Frame, kind: str, t: int | None, y: int, last: int | None) -> str:
    """A line across the row at `t`; none where it would sit on the bar's end anyway."""
    if t is None or t == last:
        return ""
    x = f"{frame.x(t):.1f}"
    return f'<line class="mark mark-{kind}" x1="{x}" y1="{y + 2}" x2="{x}" y2="{y + ROW_H - 2}"></line>'


def _ticks(frame: Frame, failures: Sequence[tuple[int, str]], y: int) -> list[str]:
    """A short tick under the bar where each failed or retried attempt ended (one per pixel)."""
    drawn: dict[tuple[int, str], None] = {}
    for end, kind in failures:
        drawn.setdefault((round(frame.x(end)), kind))
    return [
        f'<line class="tick-{kind}" x1="{x}" y1="{y + ROW_H - 8}" x2="{x}" y2="{y + ROW_H + 1}"></line>'
        for x, kind in drawn
    ]


def _row(frame: Frame, i: int, span: NodeSpan, href: str) -> str:
    y, h = frame.top(i), ROW_H - 8
    parts = [
        f'<a href="{escape(href)}"><g class="tl-row tl-node tl-node-{span.status}" '
        f'data-identifier="{escape(span.identifier)}" data-status="{span.status}" data-count="{span.count}">'
        f"<title>{escape(tooltip(span, frame.axis.start))}</title>"
        f'<text class="tl-label" x="{PAD}" y="{y + 15}">{escape(_label(span))}</text>'
    ]
    if span.start > span.first_due:  # waited for a runtime before the first claim
        parts.append(
            f'<rect class="seg seg-waiting" x="{frame.x(span.first_due):.1f}" y="{y + 4}" '
            f'width="{frame.width_of(span.first_due, span.start):.1f}" height="{h}" rx="2"></rect>'
        )
    parts.append(
        f'<rect class="spread spread-{span.bar}" x="{frame.x(span.start):.1f}" y="{y + 4}" '
        f'width="{frame.width_of(span.start, span.until):.1f}" height="{h}" rx="2"></rect>'
    )
    parts += _ticks(frame, span.failures, y)
    for kind, t in (("median", span.median_end), ("p95", span.p95_end)):
        parts.append(_marker(frame, kind, t, y, span.last_end))
    parts.append("</g></a>")
    return "".join(parts)


def render_svg(spans: Sequence[NodeSpan], href: Callable[[str], str]) -> Markup:
    """The spans as rows on one time axis; `href(identifier)` links a row to the node's states."""
    if not spans:
        return Markup("")
    frame = Frame.around(min(s.first_due for s in spans), max(s.until for s in spans), len(spans))
    parts = open_svg(frame, "node", "Timeline: one row per node")
    parts += [_row(frame, i, span, href(span.identifier)) for i, span in enumerate(spans)]
    parts.append("</svg>")
    return Markup("".join(parts))
