"""The rollout policy and service-level objectives of a deployment (typed, self-documenting).

A rollout moves traffic from the stable version to a candidate through an optional shadow stage and
canary steps; after each step's minimum duration and request count, an analysis compares candidate
with stable over the same window, metric by metric, against the thresholds below. Thresholds are
relative to stable. Missing data or too few samples fail the analysis, never pass it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SLO(_Strict):
    """Service-level objectives of a deployment; a canary that breaks one fails its step."""

    max_error_rate: float = Field(0.01, ge=0, le=1, description="Share of requests answered 5xx or failed.")
    p95_latency_ms: float | None = Field(None, gt=0, description="95th percentile total latency, ms.")
    p95_ttft_ms: float | None = Field(None, gt=0, description="95th percentile time to first token, ms.")


class CanaryStep(_Strict):
    """One step of the canary: the candidate's share of traffic and how long it is watched."""

    weight: float = Field(gt=0, le=100, description="Percent of traffic sent to the candidate.")
    min_duration_s: float = Field(60.0, ge=0, description="Watch the step at least this long.")
    min_requests: int = Field(
        50, ge=1, description="Candidate requests needed before the step can be judged."
    )
    max_duration_s: float | None = Field(
        None,
        gt=0,
        description="Fail the step if it has not gathered min_requests by then; default 10x min_duration_s "
        "(at least 10 minutes).",
    )


class ShadowStage(_Strict):
    """Mirror a sample of live traffic to the candidate before it answers anyone."""

    sample_rate: float = Field(1.0, gt=0, le=1, description="Share of requests mirrored to the candidate.")
    min_duration_s: float = Field(60.0, ge=0, description="Watch the shadow at least this long.")
    min_requests: int = Field(50, ge=1, description="Mirrored requests needed before judging.")


class AnalysisThresholds(_Strict):
    """How much worse than stable the candidate may be, per metric (None: not judged)."""

    max_error_rate_increase: float | None = Field(
        0.01,
        ge=0,
        description="Candidate error rate minus stable's, absolute (0.01 = one percentage point); "
        "judged with a one-sided two-proportion test at `alpha`.",
    )
    max_p95_latency_ratio: float | None = Field(
        1.5, gt=0, description="Candidate p95 latency / stable p95 latency."
    )
    max_p95_ttft_ratio: float | None = Field(1.5, gt=0, description="Candidate p95 TTFT / stable p95 TTFT.")
    max_online_eval_drop: float | None = Field(
        0.05,
        ge=0,
        description="Stable mean online-evaluation score minus candidate's (scores are 0..1); "
        "needs online evaluation enabled on the deployment.",
    )
    max_feedback_drop: float | None = Field(
        None, ge=0, description="Stable mean feedback score minus candidate's (0..1)."
    )
    max_guardrail_block_rate_increase: float | None = Field(
        0.02, ge=0, description="Candidate guardrail block rate minus stable's, absolute."
    )
    max_cost_per_request_ratio: float | None = Field(
        None, gt=0, description="Candidate mean cost per request / stable's."
    )
    min_samples: int = Field(
        20, ge=1, description="Per-metric samples needed on each side; fewer fails the metric."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the statistical tests.")


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=w) for w in (5, 25, 50, 100)]


class RolloutPolicy(_Strict):
    """How a candidate reaches 100% of a deployment's traffic, or is pulled back."""

    shadow: ShadowStage | None = Field(
        None, description="Shadow stage before the first step: not supported yet, refused when set."
    )
    steps: list[CanaryStep] = Field(
        default_factory=_default_steps, description="Canary steps in order; the last should be 100."
    )
    analysis: AnalysisThresholds = Field(default_factory=AnalysisThresholds)
    analysis_interval_s: float = Field(
        5.0, gt=0, description="How often the controller re-reads the numbers of the current step."
    )
    require_passed_gates: bool = Field(
        True, description="Refuse a candidate whose stored evaluation gates have not all passed."
    )
    require_signature: bool = Field(
        False,
        description="Refuse a candidate whose Ed25519 signature (`llmops models sign`) does not verify "
        "against signing_public_key, or whose files no longer match their digest.",
    )
    signing_public_key: Path | None = Field(
        None,
        description="Ed25519 public key (PEM) candidates must be signed with; needed by require_signature.",
    )
    alias: str = Field("production", description="The registry alias promotion moves.")

    @model_validator(mode="after")
    def _steps_increase(self) -> RolloutPolicy:
        weights = [step.weight for step in self.steps]
        if not weights:
            raise ValueError("steps: give at least one canary step (e.g. weight: 100)")
        if weights != sorted(weights) or len(set(weights)) != len(weights):
            raise ValueError(f"steps: weights must strictly increase, got {weights}")
        if self.shadow is not None:
            # the deploy targets cannot yet make the gateway mirror to a candidate's track: refuse the
            # stage rather than run one that never sees a mirrored request
            raise ValueError(
                "shadow: a shadow stage is not supported yet (the gateway does not mirror to a "
                "rollout's candidate); remove `shadow:` and start with a small canary step instead"
            )
        if self.require_signature and self.signing_public_key is None:
            raise ValueError("require_signature: set signing_public_key to the PEM file of the signing key")
        return self
