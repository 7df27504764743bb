"""Alert rules as YAML: pydantic models, durations, and loading with errors that name the field.

A rule is a condition over one metric sample name (anything the monitor can read: an exported
Prometheus sample such as ``llmops_drift_score`` or ``llmops_online_eval_score_mean``), optionally
narrowed by label matchers: ``value <op> threshold`` held for ``for`` (a duration) before the alert
fires. Each label set of a matching sample is its own alert. Rules name a webhook from the file's
``webhooks`` section. Example::

    webhooks:
      ops: {url: "http://alerts.internal:9000/hook"}
    rules:
      - name: prompt-drift
        metric: llmops_drift_detected
        match: {feature: overall}
        op: ">="
        threshold: 1
        for: 10m
        labels: {severity: warning}
        webhook: ops
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops.errors import InvalidInput
from llmops.security.yaml_input import load_yaml

Op = Literal[">", ">=", "<", "<="]
_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")
_COMPARE = {
    ">": lambda value, threshold: value > threshold,
    ">=": lambda value, threshold: value >= threshold,
    "<": lambda value, threshold: value < threshold,
    "<=": lambda value, threshold: value <= threshold,
}


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number or a duration like ``90s``, ``5m``, ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value.strip())
        if not value.strip() or match is None:
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 1h or 1h30m")
        parts = {unit: float(amount) for unit, amount in match.groupdict().items() if amount}
        seconds = parts.get("h", 0.0) * 3600 + parts.get("m", 0.0) * 60 + parts.get("s", 0.0)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


class WebhookTarget(BaseModel):
    """Where notifications go: a JSON POST to ``url``, retried with exponential backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="http:// or https:// URL the alert JSON is POSTed to.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers (e.g. auth).")
    timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one POST, in seconds.")
    max_attempts: int = Field(default=5, ge=1, le=20, description="Attempts before a delivery is failed.")
    backoff_s: float = Field(
        default=1.0, ge=0, description="Wait before the first retry; doubles each retry."
    )
    max_backoff_s: float = Field(default=60.0, ge=0, description="Longest wait between two attempts.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


class AlertRule(BaseModel):
    """``value <op> threshold`` on samples named ``metric`` (with labels ``match``) for ``for``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$", description="The alert's name (alertname).")
    metric: str = Field(
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="Sample name the condition reads, e.g. llmops_drift_score.",
    )
    match: dict[str, str] = Field(default_factory=dict, description="Label values a sample must have.")
    op: Op = Field(description="Comparison of the value with the threshold: >, >=, < or <=.")
    threshold: float = Field(description="The value compared with.")
    for_s: float = Field(
        default=0.0, alias="for", description="How long the condition must hold before firing (e.g. 5m)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels added to the alert.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Text added to the alert.")
    webhook: str | None = Field(default=None, description="Name of the webhook (under 'webhooks') to notify.")

    @field_validator("for_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        if not isinstance(value, str | int | float):
            raise ValueError("a duration is a number of seconds or a string like '5m'")
        return parse_duration(value)

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        return name == self.metric and all(labels.get(key) == value for key, value in self.match.items())

    def holds(self, value: float) -> bool:
        return bool(_COMPARE[self.op](value, self.threshold))


class AlertRuleSet(BaseModel):
    """An alert rules file: named webhook targets and the rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhooks: dict[str, WebhookTarget] = Field(default_factory=dict, description="Webhook targets by name.")
    rules: list[AlertRule] = Field(default_factory=list, description="The alert rules.")

    @model_validator(mode="after")
    def _consistent(self) -> AlertRuleSet:
        # InvalidInput (not ValueError) passes through pydantic, keeping the exact field in ``param``.
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                raise InvalidInput(
                    f"alert rules: rules.{index}.name: {rule.name!r} is used twice; names must be unique",
                    param=f"rules.{index}.name",
                )
            seen.add(rule.name)
            if rule.webhook is not None and rule.webhook not in self.webhooks:
                known = ", ".join(sorted(self.webhooks)) or "none defined"
                raise InvalidInput(
                    f"alert rules: rules.{index}.webhook: no webhook {rule.webhook!r}; known: {known}",
                    param=f"rules.{index}.webhook",
                )
        return self


def parse_alert_rules(data: Any) -> AlertRuleSet:
    """Validate already-parsed YAML/JSON; ``InvalidInput`` names the first bad field (``rules.0.op``)."""
    if data is None:
        data = {}
    try:
        return AlertRuleSet.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "rules"
        message = error["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"alert rules: {field}: {message}", param=field) from exc


def load_alert_rules(source: str | Path) -> AlertRuleSet:
    """Rules from a YAML file (a ``Path``) or YAML text (a ``str``)."""
    if isinstance(source, Path) and not source.is_file():
        raise InvalidInput(f"alert rules file {source} does not exist", param="rules")
    text = source.read_text() if isinstance(source, Path) else source
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"alert rules are not valid YAML: {exc}", param="rules") from exc
    return parse_alert_rules(data)
