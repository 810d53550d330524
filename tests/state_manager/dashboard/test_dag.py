"""The DAG drawing, as a pure function: columns by longest path, joins after what they wait
for, one box per template node with its status and counts, edges as paths, text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from state_manager.dashboard.dag import BOX_W, DagNode, count_line, layout, mini_bar, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # well-formed XML, or this raises


def _diamond() -> list[DagNode]:
    return [
        DagNode("start", "Start", ("left", "right")),
        DagNode("left", "Left", ("end",)),
        DagNode("right", "Right", ("mid",)),
        DagNode("mid", "Mid", ("end",)),
        DagNode("end", "End"),
    ]


def test_columns_follow_the_longest_path_from_a_root() -> None:
    boxes = layout(_diamond()).boxes

    column = {name: box.x // (BOX_W + 1) for name, box in boxes.items()}
    assert boxes["start"].x < boxes["left"].x == boxes["right"].x < boxes["mid"].x < boxes["end"].x
    assert len(set(column.values())) == 4


def test_boxes_never_overlap() -> None:
    boxes = list(layout([*_diamond(), DagNode("extra", "Extra", ("end",))]).boxes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert (a.x, a.y) != (b.x, b.y)
            assert a.x != b.x or abs(a.y - b.y) >= 66


def test_a_join_comes_after_everything_below_its_anchor() -> None:
    nodes = [
        DagNode("fetch", "Fetch", ("split",)),
        DagNode("split", "Split", ("summarize",)),
        DagNode("summarize", "Summarize"),
        DagNode("report", "Report", unites="fetch"),
    ]

    drawn = layout(nodes)

    assert drawn.boxes["report"].x > drawn.boxes["summarize"].x
    [edge] = [e for e in drawn.edges if e.target == "report"]
    assert edge.source == "fetch" and edge.unites  # drawn as the dashed "waits for" link
    svg = _parse(render_svg(nodes))
    [dashed] = svg.findall(f"{SVG}path[@class='edge edge-unites']")
    assert dashed.get("data-source") == "fetch" and " L" in (dashed.get("d") or "")  # along the lane


def test_each_box_carries_its_identifier_status_and_counts_and_links_to_its_states() -> None:
    nodes = [
        DagNode("a", "Alpha", ("b",), status="SUCCESS", counts={"SUCCESS": 1}, total=1),
        DagNode(
            "b",
            "Beta",
            status="FAILED",
            counts={"SUCCESS": 997, "ERRORED": 2, "RETRY_CREATED": 1},
            total=1000,
        ),
    ]

    svg = _parse(render_svg(nodes, href=lambda ident: f"?tab=states&identifier={ident}"))

    groups = {g.get("data-identifier"): g for g in svg.iter(f"{SVG}g") if g.get("data-identifier")}
    assert {k: g.get("data-status") for k, g in groups.items()} == {"a": "SUCCESS", "b": "FAILED"}
    assert groups["b"].get("class") == "node node-FAILED"
    texts = [t.text for t in groups["b"].iter(f"{SVG}text")]
    assert texts == ["b", "Beta · 1000 states", "997 done · 2 failed · 1 retried"]
    bars = [r.get("class") for r in groups["b"].iter(f"{SVG}rect")][1:]
    assert bars == ["bar bar-done", "bar bar-failed", "bar bar-retried"]
    links = [a.get("href") for a in svg.iter(f"{SVG}a")]
    assert links == ["?tab=states&identifier=a", "?tab=states&identifier=b"]
    [edge] = svg.findall(f"{SVG}path[@class='edge']")
    assert (edge.get("data-source"), edge.get("data-target")) == ("a", "b")
    assert edge.get("marker-end") == "url(#arrow)"


def test_a_template_box_has_no_status_and_a_node_without_states_says_so() -> None:
    template = _parse(render_svg([DagNode("a", "Alpha")]))
    [box] = [g for g in template.iter(f"{SVG}g") if g.get("data-identifier")]
    assert box.get("data-status") is None and box.get("class") == "node node-TEMPLATE"

    assert count_line(DagNode("x", "X", status="NOT_STARTED")) == "not started"


def test_text_is_escaped_and_the_svg_stays_well_formed() -> None:
    evil = '<script>alert("x")</script>&'
    svg = render_svg(
        [DagNode(evil, evil, status="PENDING", counts={"CREATED": 1}, total=1)], href=lambda _: evil
    )

    assert "<script>" not in svg
    parsed = _parse(svg)
    assert any(g.get("data-identifier") == evil for g in parsed.iter(f"{SVG}g"))


def test_an_empty_graph_is_an_empty_drawing() -> None:
    assert _parse(render_svg([])).get("width") == "32"


def test_the_progress_bar_splits_its_width_by_group() -> None:
    bar = _parse(mini_bar({"SUCCESS": 3, "QUEUED": 1}, width=100))

    widths = [(r.get("class"), r.get("width")) for r in bar.iter(f"{SVG}rect")]
    assert widths == [("bar-track", "100"), ("bar bar-done", "75.0"), ("bar bar-running", "25.0")]
