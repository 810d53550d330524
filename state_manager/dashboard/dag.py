"""A graph template drawn as inline SVG: pure Python, no JavaScript, no layout library.

Layout: each node goes into the column of its longest path from a root (left to right), the
nodes of a column are ordered by a few barycenter sweeps (fewer crossing edges), and edges are
cubic curves from the right edge of a box to the left edge of the next. Boxes carry their
status as a CSS class (colours live in the stylesheet, not in the markup) and as
`data-status`; a fan-out is one box with the counts of all its states. On a compare page a box
carries instead how the node differs between two runs (`change`, as `data-change`) and a line
saying so (`note`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from state_manager.dashboard.render import status_label

BOX_W, BOX_H = 224, 66
GAP_X, GAP_Y, PAD = 64, 22, 16
BAR_H = 5

# Status of a state -> the group it is counted in on a box (and the CSS class of its bar).
GROUPS: dict[str, str] = {
    "SUCCESS": "done",
    "PRUNED": "done",
    "QUEUED": "running",
    "EXECUTED": "running",
    "CREATED": "waiting",
    "ERRORED": "failed",
    "TIMEDOUT": "failed",
    "NEXT_CREATED_ERROR": "failed",
    "RETRY_CREATED": "retried",
    "CANCELLED": "cancelled",
}
GROUP_ORDER = ("done", "running", "waiting", "failed", "retried", "cancelled")


@dataclass(frozen=True)
class DagNode:
    """One template node; `status` and `counts` are those of a run ("" and empty without one)."""

    identifier: str
    node_name: str
    next_nodes: tuple[str, ...] = ()
    unites: str | None = None
    status: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)
    total: int = 0
    change: str = ""  # on a compare page: changed, same, only_a, only_b (or none: it ran in neither)
    note: str = ""  # the third line of a box that has no run status (a compare page's)


@dataclass(frozen=True)
class Box:
    node: DagNode
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    unites: bool  # the dashed "waits for" link of a join, not a next_nodes edge


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    edges: list[Edge]
    width: int
    height: int
    lane: int  # the y of the lane under the boxes that edges spanning several columns follow


def _columns(nodes: Sequence[DagNode], edges: list[Edge]) -> dict[str, int]:
    """Column of each node: the length of its longest path from a root (Kahn's order)."""
    incoming = {n.identifier: 0 for n in nodes}
    outgoing: dict[str, list[str]] = {n.identifier: [] for n in nodes}
    for edge in edges:
        incoming[edge.target] += 1
        outgoing[edge.source].append(edge.target)
    column = dict.fromkeys(incoming, 0)
    ready = [name for name, n in incoming.items() if n == 0]
    seen: set[str] = set()
    while ready:
        name = ready.pop(0)
        seen.add(name)
        for nxt in outgoing[name]:
            column[nxt] = max(column[nxt], column[name] + 1)
            incoming[nxt] -= 1
            if incoming[nxt] == 0:
                ready.append(nxt)
    last = max(column.values(), default=0)
    for name in column:  # a cycle (never stored, but drawn rather than lost): one column after
        if name not in seen:
            column[name] = last + 1
    return column


def _order(columns: dict[str, int], edges: list[Edge], sweeps: int = 4) -> list[list[str]]:
    """Nodes of each column, ordered to keep edges short (barycenter heuristic)."""
    count = max(columns.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(count)]
    for name, col in columns.items():
        layers[col].append(name)
    neighbours: dict[str, list[str]] = {name: [] for name in columns}
    for edge in edges:
        neighbours[edge.source].append(edge.target)
        neighbours[edge.target].append(edge.source)
    for sweep in range(sweeps):
        indices = range(1, count) if sweep % 2 == 0 else range(count - 2, -1, -1)
        for i in indices:
            ref = layers[i - 1] if sweep % 2 == 0 else layers[i + 1]
            where = {name: pos for pos, name in enumerate(ref)}

            def centre(name: str, where: dict[str, int] = where) -> float:
                linked = [where[n] for n in neighbours[name] if n in where]
                return sum(linked) / len(linked) if linked else float("inf")

            current = {name: pos for pos, name in enumerate(layers[i])}
            layers[i].sort(key=lambda n: (centre(n), current[n]))
    return layers


def edges_of(nodes: Sequence[DagNode]) -> list[Edge]:
    present = {n.identifier for n in nodes}
    edges = [Edge(n.identifier, target, False) for n in nodes for target in n.next_nodes if target in present]
    linked = {(e.source, e.target) for e in edges}
    for n in nodes:
        if n.unites and n.unites in present and (n.unites, n.identifier) not in linked:
            edges.append(Edge(n.unites, n.identifier, True))
    return edges


def _join_constraints(nodes: Sequence[DagNode], edges: list[Edge]) -> list[Edge]:
    """Layout-only edges that put a join after everything it waits for: every node below its
    anchor (but not the join itself or what follows it)."""
    below: dict[str, list[str]] = {n.identifier: [] for n in nodes}
    for edge in edges:
        if not edge.unites:
            below[edge.source].append(edge.target)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in below[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    extra = []
    for node in nodes:
        if node.unites and node.unites in below:
            after_join = reach(node.identifier) | {node.identifier}
            extra += [Edge(n, node.identifier, True) for n in sorted(reach(node.unites) - after_join)]
    return extra


def layout(nodes: Sequence[DagNode]) -> Layout:
    """Positions of every box (top-left corners) and the size of the drawing."""
    edges = edges_of(nodes)
    placing = edges + _join_constraints(nodes, edges)
    layers = _order(_columns(nodes, placing), edges)
    tallest = max((len(layer) for layer in layers), default=0)
    height = PAD * 2 + tallest * BOX_H + max(tallest - 1, 0) * GAP_Y
    by_name = {n.identifier: n for n in nodes}
    boxes: dict[str, Box] = {}
    for col, layer in enumerate(layers):
        used = len(layer) * BOX_H + max(len(layer) - 1, 0) * GAP_Y
        top = (height - used) // 2
        for row, name in enumerate(layer):
            boxes[name] = Box(by_name[name], PAD + col * (BOX_W + GAP_X), top + row * (BOX_H + GAP_Y))
    width = PAD * 2 + len(layers) * BOX_W + max(len(layers) - 1, 0) * GAP_X
    lane = height - PAD + GAP_Y // 2
    if any(_spans(boxes[e.source], boxes[e.target]) for e in edges):
        height += GAP_Y + PAD // 2  # room for the lane
    return Layout(boxes=boxes, edges=edges, width=max(width, 0), height=max(height, 0), lane=lane)


def _spans(a: Box, b: Box) -> bool:
    """Whether an edge from `a` to `b` skips a column (it would cross the boxes in between)."""
    return b.x - (a.x + BOX_W) > GAP_X


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def grouped(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per display group (done, running, waiting, failed, retried, cancelled), non-zero."""
    groups: dict[str, int] = {}
    for status, n in counts.items():
        if n:
            group = GROUPS.get(status, "waiting")
            groups[group] = groups.get(group, 0) + n
    return {g: groups[g] for g in GROUP_ORDER if g in groups}


def count_line(node: DagNode) -> str:
    """The third line of a box: how its states stand (`12 done · 3 failed`), or `not started`."""
    if node.total == 0:
        return "not started"
    return _fit(" · ".join(f"{n} {g}" for g, n in grouped(node.counts).items()), 38)


def sub_line(node: DagNode) -> str:
    """The second line of a box: the node's name, and how many states it has in the run."""
    if not node.status or node.total == 0:
        return _fit(node.node_name, 36)
    states = f"{node.total} state{'' if node.total == 1 else 's'}"
    return _fit(node.node_name, 36 - len(states) - 3) + " · " + states


def _bar(box: Box) -> str:
    total = sum(grouped(box.node.counts).values())
    if not total:
        return ""
    x: float = box.x + 10
    y, out = box.y + BOX_H - 10, []
    span = BOX_W - 20
    for group, n in grouped(box.node.counts).items():
        w = span * n / total
        out.append(
            f'<rect class="bar bar-{group}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}"></rect>'
        )
        x += w
    return "".join(out)


def _tooltip(node: DagNode) -> str:
    lines = [f"{node.identifier} ({node.node_name})"]
    if node.status:
        lines.append(f"status: {node.status}")
    if node.note:
        lines.append(node.note)
    lines += [f"{status_label(status)}: {n}" for status, n in sorted(node.counts.items()) if n]
    if node.unites:
        lines.append(f"joins: waits for every branch of {node.unites}")
    return "\n".join(lines)


def _box(box: Box, href: str | None) -> str:
    node, x, y = box.node, box.x, box.y
    status_attr = f' data-status="{escape(node.status)}"' if node.status else ""
    css = f"node node-{escape(node.status or 'TEMPLATE')}"
    if node.change:
        css += f" change-{escape(node.change)}"
        status_attr += f' data-change="{escape(node.change)}"'
    lines = [escape(_fit(node.identifier, 26)), escape(sub_line(node))]
    shape = (
        f'<g class="{css}" data-identifier="{escape(node.identifier)}"{status_attr}>'
        f"<title>{escape(_tooltip(node))}</title>"
        f'<rect class="box" x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="7"></rect>'
        f'<text class="box-title" x="{x + 12}" y="{y + 20}">{lines[0]}</text>'
        f'<text class="box-sub" x="{x + 12}" y="{y + 36}">{lines[1]}</text>'
    )
    if node.status:
        shape += f'<text class="box-count" x="{x + 12}" y="{y + 50}">{escape(count_line(node))}</text>'
        shape += _bar(box)
    elif node.note:
        shape += f'<text class="box-count" x="{x + 12}" y="{y + 50}">{escape(_fit(node.note, 38))}</text>'
    shape += "</g>"
    return f'<a href="{escape(href)}">{shape}</a>' if href else shape


def _edge(layout: Layout, edge: Edge) -> str:
    a, b = layout.boxes[edge.source], layout.boxes[edge.target]
    x1, y1 = a.x + BOX_W, a.y + BOX_H // 2
    x2, y2 = b.x, b.y + BOX_H // 2
    if x2 <= x1:  # a back edge (only in a cycle): around the bottom
        low = max(a.y, b.y) + BOX_H + GAP_Y // 2
        d = f"M{x1},{y1} C{x1 + 40},{low} {x2 - 40},{low} {x2},{y2}"
    elif _spans(a, b):  # down to the lane under the boxes, along it, and up into the target
        lane, r = layout.lane, GAP_X // 2
        d = (
            f"M{x1},{y1} C{x1 + r},{y1} {x1 + r},{lane} {x1 + GAP_X},{lane} "
            f"L{x2 - GAP_X},{lane} C{x2 - r},{lane} {x2 - r},{y2} {x2},{y2}"
        )
    else:
        bend = max((x2 - x1) / 2, 24)
        d = f"M{x1},{y1} C{x1 + bend:.0f},{y1} {x2 - bend:.0f},{y2} {x2},{y2}"
    css = "edge edge-unites" if edge.unites else "edge"
    return (
        f'<path class="{css}" d="{d}" data-source="{escape(edge.source)}" '
        f'data-target="{escape(edge.target)}" marker-end="url(#arrow)"></path>'
    )


def render_svg(
    nodes: Sequence[DagNode], *, href: Callable[[str], str | None] | None = None, title: str = "Graph"
) -> Markup:
    """The DAG as an `<svg>` element. `href(identifier)` links each box (None: no link)."""
    drawn = layout(nodes)
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{drawn.width}" height="{drawn.height}" viewBox="0 0 {drawn.width} {drawn.height}">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path class="arrow" d="M0,0 L10,5 L0,10 z">'
        "</path></marker></defs>",
    ]
    parts += [_edge(drawn, edge) for edge in drawn.edges]
    parts += [_box(box, href(name) if href else None) for name, box in drawn.boxes.items()]
    parts.append("</svg>")
    return Markup("".join(parts))


def mini_bar(counts: Mapping[str, int], width: int = 120, height: int = 8) -> Markup:
    """A run's progress: one small stacked bar of its states by group (done, running, ...)."""
    groups = grouped(counts)
    total = sum(groups.values())
    parts = [
        f'<svg class="mini-bar" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-hidden="true"><rect class="bar-track" x="0" y="0" '
        f'width="{width}" height="{height}" rx="3"></rect>'
    ]
    x = 0.0
    for group, n in groups.items():
        w = width * n / total
        parts.append(
            f'<rect class="bar bar-{group}" x="{x:.1f}" y="0" width="{w:.1f}" height="{height}"></rect>'
        )
        x += w
    parts.append("</svg>")
    return Markup("".join(parts))
