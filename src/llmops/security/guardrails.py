"""Input and output guardrails, configured per deployment; pure functions over text.

Each check returns a ``GuardrailDecision`` (rule, action, score, detail); ``check_input`` and
``check_output`` run the checks a deployment enabled and fold them into a ``GuardrailReport`` whose
``action`` is the strictest decision. A failing check takes the deployment's ``mode`` (``block`` or
``flag``), overridable per rule in ``rule_modes``. Details name rules, entity types and counts,
never the matched personal data, so a report can be logged as is. The gateway wires these in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.security.guardrail_rules import injection_score, normalise
from llmops.security.pii import PIIConfig, PIIDetector, PIIType

Action = Literal["block", "flag", "allow"]
Mode = Literal["block", "flag"]
RULES = (
    "prompt_injection",
    "input_length",
    "output_length",
    "blocked_terms",
    "blocked_patterns",
    "output_pii",
    "output_schema",
    "system_prompt_leak",
)
SHINGLE_WORDS = 8
_SEVERITY = {"allow": 0, "flag": 1, "block": 2}


class GuardrailConfig(BaseModel):
    """The guardrails of one deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field(default="block", description="What a failing check does: block or flag.")
    rule_modes: dict[str, Mode] = Field(
        default_factory=dict, description=f"Per-rule override of mode; rules: {', '.join(RULES)}."
    )
    injection_threshold: float | None = Field(
        default=0.5, ge=0.0, le=1.0, description="Injection score at or above which input fails; None: off."
    )
    max_input_chars: int | None = Field(default=None, ge=1, description="Longest input accepted.")
    max_output_chars: int | None = Field(default=None, ge=1, description="Longest output accepted.")
    blocked_terms: tuple[str, ...] = Field(
        default=(), description="Words or phrases refused in input and output (case-insensitive, whole word)."
    )
    blocked_patterns: tuple[str, ...] = Field(
        default=(), description="Regular expressions refused in input and output."
    )
    output_pii_types: frozenset[PIIType] = Field(
        default=frozenset(PIIType), description="Entity types that must not appear in outputs; empty: off."
    )
    pii: PIIConfig = Field(default_factory=PIIConfig, description="Detector settings for the output check.")
    output_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema every output must satisfy (the output must be JSON)."
    )

    @field_validator("rule_modes")
    @classmethod
    def _known_rules(cls, value: dict[str, Mode]) -> dict[str, Mode]:
        unknown = sorted(set(value) - set(RULES))
        if unknown:
            raise ValueError(f"unknown guardrail rules {unknown}; known: {', '.join(RULES)}")
        return value

    @field_validator("blocked_patterns")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"blocked pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from exc
        return value

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"output_schema is not a valid JSON Schema: {exc.message}") from exc
        return value

    def fail_action(self, rule: str) -> Mode:
        return self.rule_modes.get(rule, self.mode)


@dataclass(frozen=True)
class GuardrailDecision:
    """The outcome of one check: ``allow``, or the configured ``block``/``flag`` with why."""

    rule: str
    action: Action
    score: float
    detail: str


@dataclass(frozen=True)
class GuardrailReport:
    """All decisions for one text; ``action`` is the strictest of them."""

    decisions: tuple[GuardrailDecision, ...]

    @property
    def action(self) -> Action:
        worst: Action = "allow"
        for decision in self.decisions:
            if _SEVERITY[decision.action] > _SEVERITY[worst]:
                worst = decision.action
        return worst

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    def failed(self) -> list[GuardrailDecision]:
        return [d for d in self.decisions if d.action != "allow"]


def _decide(config: GuardrailConfig, rule: str, failed: bool, score: float, detail: str) -> GuardrailDecision:
    action: Action = config.fail_action(rule) if failed else "allow"
    return GuardrailDecision(rule, action, round(score, 4), detail)


def check_injection(text: str, config: GuardrailConfig) -> GuardrailDecision:
    """Prompt injection, jailbreak and system-prompt exfiltration heuristics (weighted score)."""
    result = injection_score(text)
    threshold = config.injection_threshold
    failed = threshold is not None and result.score >= threshold
    detail = f"score {result.score:.2f} (threshold {threshold}); rules: {', '.join(result.matched) or 'none'}"
    return _decide(config, "prompt_injection", failed, result.score, detail)


def check_length(text: str, config: GuardrailConfig, *, output: bool) -> GuardrailDecision:
    """Refuse texts longer than ``max_output_chars`` (outputs) or ``max_input_chars`` (inputs)."""
    rule, limit = (
        ("output_length", config.max_output_chars) if output else ("input_length", config.max_input_chars)
    )
    if limit is None:
        return _decide(config, rule, False, 0.0, "no limit")
    failed = len(text) > limit
    return _decide(
        config, rule, failed, min(1.0, len(text) / limit), f"{len(text)} characters (limit {limit})"
    )


@lru_cache(maxsize=64)
def _terms_regex(terms: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(normalise(term).strip()) for term in terms)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def check_blocked_terms(text: str, config: GuardrailConfig) -> GuardrailDecision:
    """Whole-word, case-insensitive matches of ``blocked_terms`` (after the injection normalisation)."""
    if not config.blocked_terms:
        return _decide(config, "blocked_terms", False, 0.0, "no terms configured")
    hits = sorted(set(_terms_regex(config.blocked_terms).findall(normalise(text))))
    return _decide(
        config, "blocked_terms", bool(hits), float(bool(hits)), f"matched: {', '.join(hits) or 'none'}"
    )


def check_blocked_patterns(text: str, config: GuardrailConfig) -> GuardrailDecision:
    """Any of ``blocked_patterns`` found in the text; the detail names the patterns, not the text."""
    hits = [pattern for pattern in config.blocked_patterns if re.search(pattern, text)]
    detail = f"matched patterns: {', '.join(hits)}" if hits else "no pattern matched"
    return _decide(config, "blocked_patterns", bool(hits), float(bool(hits)), detail)


def check_output_pii(text: str, config: GuardrailConfig) -> GuardrailDecision:
    """Personal data or secrets in an output; the detail counts them by type, never quotes them."""
    if not config.output_pii_types:
        return _decide(config, "output_pii", False, 0.0, "off")
    detector = PIIDetector(config.pii.model_copy(update={"types": config.output_pii_types}))
    findings = detector.detect(text)
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.type.value] = counts.get(finding.type.value, 0) + 1
    detail = ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items())) or "none found"
    return _decide(
        config, "output_pii", bool(findings), max((f.score for f in findings), default=0.0), detail
    )


def check_output_schema(text: str, config: GuardrailConfig) -> GuardrailDecision:
    """The output parses as JSON and satisfies ``output_schema``."""
    if config.output_schema is None:
        return _decide(config, "output_schema", False, 0.0, "no schema configured")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return _decide(config, "output_schema", True, 1.0, f"output is not JSON: {exc.msg} at {exc.pos}")
    validator = jsonschema.validators.validator_for(config.output_schema)(config.output_schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is None:
        return _decide(config, "output_schema", False, 0.0, "valid")
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return _decide(config, "output_schema", True, 1.0, f"at {where}: {error.message}")


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", normalise(text))
    return {tuple(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def check_system_prompt_leak(text: str, system_prompt: str, config: GuardrailConfig) -> GuardrailDecision:
    """The output repeats a run of eight or more words of the system prompt."""
    prompt = _shingles(system_prompt)
    if not prompt:
        return _decide(config, "system_prompt_leak", False, 0.0, "system prompt too short to check")
    shared = len(prompt & _shingles(text))
    score = shared / len(prompt)
    detail = f"{shared} of {len(prompt)} eight-word runs of the system prompt repeated"
    return _decide(config, "system_prompt_leak", shared > 0, score, detail)


def check_input(text: str, config: GuardrailConfig) -> GuardrailReport:
    """Guardrails on a prompt before it reaches a model."""
    decisions = [check_length(text, config, output=False)]
    if config.injection_threshold is not None:
        decisions.append(check_injection(text, config))
    decisions += [check_blocked_terms(text, config), check_blocked_patterns(text, config)]
    return GuardrailReport(tuple(decisions))


def check_output(text: str, config: GuardrailConfig, *, system_prompt: str | None = None) -> GuardrailReport:
    """Guardrails on a model's answer before it reaches the caller."""
    decisions = [
        check_length(text, config, output=True),
        check_blocked_terms(text, config),
        check_blocked_patterns(text, config),
        check_output_pii(text, config),
        check_output_schema(text, config),
    ]
    if system_prompt:
        decisions.append(check_system_prompt_leak(text, system_prompt, config))
    return GuardrailReport(tuple(decisions))
