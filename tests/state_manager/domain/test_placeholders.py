"""Placeholders in node inputs: what parses, what a user is told when it doesn't, and substitution."""

from __future__ import annotations

import pytest

from state_manager.domain.placeholders import (
    OutputRef,
    PlaceholderError,
    Ref,
    StoreRef,
    find_refs,
    parse_template,
    render,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", ["plain text"]),
        ("", [""]),
        ("${{ a.outputs.x }}", ["", OutputRef("a", "x"), ""]),
        ("${{a.outputs.x}}", ["", OutputRef("a", "x"), ""]),
        ("${{   a  .  outputs  .  x   }}", ["", OutputRef("a", "x"), ""]),
        ("${{ store.k }}", ["", StoreRef("k"), ""]),
        ("${{store . k}}", ["", StoreRef("k"), ""]),
        (
            "pre ${{ a.outputs.x }} mid ${{ store.k }} post",
            ["pre ", OutputRef("a", "x"), " mid ", StoreRef("k"), " post"],
        ),
        ("${{ store.k }} tail }} more", ["", StoreRef("k"), " tail }} more"]),
        ("{{ a.outputs.x }} and $ {{", ["{{ a.outputs.x }} and $ {{"]),
    ],
)
def test_parse_template_alternates_literals_and_refs(text: str, expected: list[str | Ref]) -> None:
    assert parse_template(text) == expected


def test_unclosed_placeholder_names_the_input_string() -> None:
    with pytest.raises(PlaceholderError, match="not closed") as info:
        parse_template("hello ${{ a.outputs.x")
    assert "hello ${{ a.outputs.x" in str(info.value)


def test_a_second_opening_without_close_is_unclosed() -> None:
    with pytest.raises(PlaceholderError, match="not closed"):
        parse_template("${{ a.outputs.x }} then ${{ store.k")


@pytest.mark.parametrize(
    "placeholder",
    [
        "${{ }}",
        "${{ a }}",
        "${{ a.b.c }}",
        "${{ a.outputs }}",
        "${{ a.outputs.x.y }}",
        "${{ .outputs.x }}",
        "${{ a.outputs. }}",
        "${{ store }}",
        "${{ store. }}",
        "${{ store.a.b }}",
        "${{ other.k }}",
    ],
)
def test_malformed_placeholder_names_the_placeholder(placeholder: str) -> None:
    with pytest.raises(PlaceholderError, match="Invalid placeholder") as info:
        parse_template(f"x {placeholder} y")
    assert placeholder in str(info.value)


def test_placeholder_error_is_a_value_error() -> None:
    assert issubclass(PlaceholderError, ValueError)


def test_find_refs_keeps_order_and_repeats() -> None:
    text = "${{ store.k }}-${{ a.outputs.x }}-${{ store.k }}"
    assert find_refs(text) == [StoreRef("k"), OutputRef("a", "x"), StoreRef("k")]


def test_find_refs_of_plain_text_is_empty() -> None:
    assert find_refs("no placeholders here") == []


def test_refs_print_as_canonical_placeholders() -> None:
    assert str(OutputRef("a", "x")) == "${{ a.outputs.x }}"
    assert str(StoreRef("k")) == "${{ store.k }}"


def _resolve(ref: Ref) -> str:
    if isinstance(ref, StoreRef):
        return f"<store {ref.key}>"
    return f"<{ref.identifier} {ref.field}>"


def test_render_substitutes_every_ref_and_keeps_literals() -> None:
    text = "a=${{ a.outputs.x }}, k=${{store.k}}; a again=${{ a.outputs.x }}"
    assert render(text, _resolve) == "a=<a x>, k=<store k>; a again=<a x>"


def test_render_keeps_text_after_the_first_close_literally() -> None:
    assert render("${{ store.k }}}} end", _resolve) == "<store k>}} end"


def test_render_without_placeholders_returns_text_unchanged() -> None:
    def never(ref: Ref) -> str:
        raise AssertionError(f"resolve called for {ref}")

    assert render("just $ text {{ }}", never) == "just $ text {{ }}"


def test_render_propagates_resolver_errors() -> None:
    def missing(ref: Ref) -> str:
        raise PlaceholderError(f"no value for {ref}")

    with pytest.raises(PlaceholderError, match="no value for"):
        render("${{ store.k }}", missing)


def test_render_refuses_non_string_values() -> None:
    def number(ref: Ref) -> str:
        return 42  # type: ignore[return-value]

    with pytest.raises(PlaceholderError, match="not a string") as info:
        render("n=${{ a.outputs.x }}", number)
    assert "${{ a.outputs.x }}" in str(info.value)


def test_render_rejects_malformed_text() -> None:
    with pytest.raises(PlaceholderError, match="not closed"):
        render("${{ store.k", _resolve)


def test_a_collecting_reference_is_parsed_with_its_star() -> None:
    from state_manager.domain.placeholders import OutputRef, PlaceholderError, find_refs

    assert find_refs("${{ square.outputs.sq[*] }}") == [OutputRef("square", "sq", collect=True)]
    assert find_refs("${{square.outputs.sq [*]}}") == [OutputRef("square", "sq", collect=True)]
    assert str(OutputRef("square", "sq", collect=True)) == "${{ square.outputs.sq[*] }}"
    for bad in ("${{ square.outputs.sq[0] }}", "${{ square.outputs.[*] }}"):
        try:
            find_refs(bad)
        except PlaceholderError:
            continue
        raise AssertionError(f"{bad} was accepted")
