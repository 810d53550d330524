"""Resolving a new state's inputs from its template, its branch's outputs and the run store."""

import pytest

from state_manager.domain.planning import (
    PlanningError,
    missing_store_keys,
    referenced_identifiers,
    resolve_inputs,
    root_inputs,
)


def test_outputs_of_the_branch_are_substituted() -> None:
    inputs = {"text": "${{ a.outputs.x }} and ${{b.outputs.y}}!", "plain": "as is"}
    outputs = {"a": {"x": "one"}, "b": {"y": "two"}}
    assert resolve_inputs("c", inputs, outputs, {}, {}) == {"text": "one and two!", "plain": "as is"}


def test_store_value_wins_over_the_default() -> None:
    inputs = {"k": "${{ store.key }}", "d": "${{ store.other }}"}
    resolved = resolve_inputs("n", inputs, {}, {"key": "given"}, {"key": "default", "other": "fallback"})
    assert resolved == {"k": "given", "d": "fallback"}


def test_missing_store_key_names_the_node_and_key() -> None:
    with pytest.raises(PlanningError, match=r"node n needs store key 'gone'"):
        resolve_inputs("n", {"k": "${{ store.gone }}"}, {}, {}, {})


def test_missing_output_field_names_the_field() -> None:
    with pytest.raises(PlanningError, match=r"a did not output 'missing'") as info:
        resolve_inputs("b", {"x": "${{ a.outputs.missing }}"}, {"a": {"x": "1"}}, {}, {})
    assert "Input 'x' of node b" in str(info.value)


def test_reference_to_a_node_not_on_the_branch() -> None:
    with pytest.raises(PlanningError, match="did not run before it"):
        resolve_inputs("b", {"x": "${{ z.outputs.y }}"}, {"a": {}}, {}, {})


def test_non_string_output_is_refused_with_its_type() -> None:
    with pytest.raises(PlanningError, match="which is a int, not a string"):
        resolve_inputs("b", {"x": "${{ a.outputs.n }}"}, {"a": {"n": 3}}, {}, {})


def test_non_string_template_input_is_refused() -> None:
    with pytest.raises(PlanningError, match="must be a string"):
        resolve_inputs("b", {"x": 5}, {}, {}, {})


def test_root_inputs_override_per_key_and_ignore_unknown_keys() -> None:
    template = {"a": "template-a", "b": "${{ store.s }}"}
    given = {"a": "given-a", "unknown": "dropped"}
    assert root_inputs("r", template, given, {"s": "stored"}, {}) == {"a": "given-a", "b": "stored"}


def test_given_root_input_may_itself_reference_the_store() -> None:
    assert root_inputs("r", {"a": "x"}, {"a": "${{ store.s }}"}, {"s": "v"}, {}) == {"a": "v"}


def test_referenced_identifiers_and_missing_keys() -> None:
    assert referenced_identifiers({"x": "${{ a.outputs.q }}${{ store.k }}", "y": 3}) == {"a"}
    assert missing_store_keys(["a", "b"], {"a": "1"}) == ["b"]
