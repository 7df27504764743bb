"""Suite YAML: loading, schema errors naming file and field, and pre-flight field checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import InvalidInput, NotFound
from llmops.evals.metric_specs import JudgeSpec, RegexSpec
from llmops.evals.suite import Suite, load_suite, validate_suite_against_fields

GOOD = """
name: qa-smoke
dataset: qa@3
fields: {input: question, reference: answer}
generation: {max_tokens: 64, temperature: 0.0, seed: 1, stop: ["\\n\\n"]}
metrics:
  - name: exact_match
  - name: rouge
  - name: regex
    id: cites_source
    pattern: "\\\\[\\\\d+\\\\]"
  - name: json_schema
    schema: {type: object, required: [a]}
  - name: judge
    base_url: http://127.0.0.1:9/v1/
    model: judge-7b
    rubric: Is the answer correct and concise?
    api_key_env: JUDGE_KEY
gates:
  - {metric: exact_match, min: 0.6}
  - {metric: exact_match, no_regression_vs: production, tolerance: 0.02, confidence: 0.9}
statistics: {resamples: 500, confidence: 0.9, seed: 7}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load_suite(write(tmp_path, text))
    return info.value


def test_load_good_suite(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD))
    assert suite.name == "qa-smoke" and suite.dataset == "qa@3"
    assert suite.fields.input == "question" and suite.fields.reference == "answer"
    assert suite.generation.stop == ["\n\n"] and suite.generation.seed == 1
    assert [m.metric_id for m in suite.metrics] == [
        "exact_match",
        "rouge",
        "cites_source",
        "json_schema",
        "judge",
    ]
    regex = suite.metrics[2]
    assert isinstance(regex, RegexSpec) and regex.pattern == r"\[\d+\]"
    judge = suite.metrics[4]
    assert isinstance(judge, JudgeSpec) and judge.base_url == "http://127.0.0.1:9/v1"
    assert [g.kind for g in suite.gates] == ["min", "no_regression"]
    assert suite.gates[1].display_name == "exact_match no regression vs production"
    assert suite.statistics.resamples == 500


def test_unknown_top_level_field_names_file_and_field(tmp_path: Path) -> None:
    error = load_error(tmp_path, GOOD + "colour: blue\n")
    assert "suite.yaml" in error.message and "colour" in error.message
    assert error.param == "colour"


def test_unknown_metric_param_names_the_metric_index(tmp_path: Path) -> None:
    error = load_error(tmp_path, GOOD.replace("  - name: rouge\n", "  - name: rouge\n    varient: rouge1\n"))
    assert error.param == "metrics[1].varient"
    assert "metrics[1].varient" in error.message and "Extra inputs are not permitted" in error.message


def test_unknown_metric_lists_known_ones(tmp_path: Path) -> None:
    error = load_error(tmp_path, GOOD.replace("  - name: rouge\n", "  - name: bluert\n"))
    assert "metrics[1]: unknown metric 'bluert'" in error.message
    assert "bleu" in error.message and "rouge" in error.message
    assert error.param == "metrics[1]"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('pattern: "\\\\[\\\\d+\\\\]"', 'pattern: "([unclosed"'), "not a valid regular expression"),
        (("{metric: exact_match, min: 0.6}", "{metric: bleu, min: 0.6}"), "does not compute"),
        (("{metric: exact_match, min: 0.6}", "{metric: exact_match, min: 0.6, max: 0.9}"), "exactly one"),
        (("{metric: exact_match, min: 0.6}", "{metric: exact_match, min: 0.6, tolerance: 0.1}"), "only to"),
        (("id: cites_source", "id: rouge"), "used twice"),
        (("max_tokens: 64", "max_tokens: 0"), "greater than or equal to 1"),
        (("base_url: http://127.0.0.1:9/v1/", "base_url: 127.0.0.1:9"), "http://"),
        (("schema: {type: object, required: [a]}", "schema: {type: objekt}"), "not a valid JSON Schema"),
    ],
)
def test_schema_errors(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    assert change[0] in GOOD
    error = load_error(tmp_path, GOOD.replace(*change))
    assert expected in error.message and "suite.yaml" in error.message


def test_missing_file_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_suite(tmp_path / "nope.yaml")
    assert "not valid YAML" in load_error(tmp_path, "name: [unclosed\n").message
    assert "mapping" in load_error(tmp_path, "- just\n- a list\n").message


def test_validate_against_fields_passes_when_all_present(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD))
    validate_suite_against_fields(suite, ["question", "answer", "extra"])


def test_validate_names_missing_input_and_reference(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD))
    with pytest.raises(InvalidInput) as info:
        validate_suite_against_fields(suite, ["prompt", "reference"])
    assert info.value.param == "fields.input"
    assert "'question'" in info.value.message and "'answer'" in info.value.message


def _suite(**data: object) -> Suite:
    return Suite.model_validate({"name": "s", "dataset": "d", **data})


def test_reference_only_required_when_a_metric_needs_it() -> None:
    safety = _suite(metrics=[{"name": "refusal"}, {"name": "secret_leak", "secret": "hunter2-xyz"}])
    validate_suite_against_fields(safety, ["prompt"])  # no reference column, none needed
    needs = _suite(metrics=[{"name": "bleu"}])
    with pytest.raises(InvalidInput, match="'reference'") as info:
        validate_suite_against_fields(needs, ["prompt"])
    assert info.value.param == "fields.reference"
    no_mapping = _suite(fields={"reference": None}, metrics=[{"name": "exact_match"}])
    with pytest.raises(InvalidInput, match=r"needs fields\.reference"):
        validate_suite_against_fields(no_mapping, ["prompt"])


def test_metric_dataset_fields_and_messages_are_checked() -> None:
    suite = _suite(
        fields={"messages": "chat", "reference": None},
        metrics=[{"name": "secret_leak", "secret_field": "canary"}],
    )
    with pytest.raises(InvalidInput) as info:
        validate_suite_against_fields(suite, ["prompt"])
    assert info.value.param == "fields.messages"
    assert "'chat'" in info.value.message and "'canary'" in info.value.message
    validate_suite_against_fields(suite, ["chat", "canary"])


def test_unknown_metric_in_constructed_suite_is_caught_before_generation() -> None:
    suite = _suite(metrics=[{"name": "exact_match"}])
    bogus = RegexSpec.model_construct(name="regex", pattern="x", id=None)
    object.__setattr__(bogus, "name", "bogus")  # a spec no registered kind implements
    forged = suite.model_copy(update={"metrics": [bogus]})
    with pytest.raises(InvalidInput, match="unknown metric 'bogus'"):
        validate_suite_against_fields(forged, ["prompt", "reference"])
