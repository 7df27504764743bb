"""Deploy-time gates: a candidate version must have passed its stored evaluation gates (and carry a
valid signature when the policy requires one) before any traffic reaches it.

Evaluation gates are stored on the version by ``llmops eval run SUITE.yaml --model REF`` as
``gates/<suite>`` tags (``{"passed": bool, "gates": [...]}``). A version with no stored gate result
has not passed: the check fails closed, with the command that fixes it. The supervisor runs the same
check on every version it starts (``require_gate`` below): a stable track may serve a version nobody
evaluated (a first deployment), never one whose gates failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmops.deploy.policy import RolloutPolicy
from llmops.errors import InvalidInput, LLMOpsError
from llmops.registry.client import Registry
from llmops.registry.records import ModelVersionInfo
from llmops.registry.signatures import verify_version

GATES_TAG_PREFIX = "gates/"


@dataclass(frozen=True)
class GateCheck:
    """Whether a candidate may receive traffic, why, and the stored results that decided it."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)


def check_candidate(
    registry: Registry, candidate: ModelVersionInfo, policy: RolloutPolicy, *, unevaluated_ok: bool = False
) -> GateCheck:
    """Whether ``candidate`` may receive traffic under ``policy``; ``unevaluated_ok`` lets a version
    without any stored gate result through (its failed results still refuse it)."""
    reasons: list[str] = []
    numbers: dict[str, Any] = {"candidate": candidate.ref, "digest": candidate.digest}
    if policy.require_passed_gates:
        suites = {
            k.removeprefix(GATES_TAG_PREFIX): v
            for k, v in candidate.tags.items()
            if k.startswith(GATES_TAG_PREFIX)
        }
        numbers["gates"] = {suite: bool(report.get("passed")) for suite, report in suites.items()}
        if not suites and not unevaluated_ok:
            reasons.append(
                f"{candidate.ref} has no stored evaluation gates; run `llmops eval run SUITE.yaml --model "
                f"{candidate.ref}` and roll out a version whose gates pass"
            )
        for suite, report in sorted(suites.items()):
            if not report.get("passed"):
                failed = [
                    g.get("reason", g.get("name")) for g in report.get("gates", []) if not g.get("passed")
                ]
                reasons.append(f"evaluation gates of suite {suite!r} failed: {'; '.join(map(str, failed))}")
    if policy.require_signature:
        assert policy.signing_public_key is not None  # the policy validator guarantees it
        try:
            verify_version(registry, candidate.ref, policy.signing_public_key)
            numbers["signature"] = "verified"
        except LLMOpsError as exc:  # IntegrityError, or an unreadable key
            numbers["signature"] = "not verified"
            reasons.append(f"signature of {candidate.ref} does not verify: {exc.message}")
    return GateCheck(not reasons, reasons, numbers)


def require_gate(registry: Registry, ref: str, policy: RolloutPolicy, *, unevaluated_ok: bool) -> str:
    """The exact version ``ref`` names, or ``InvalidInput`` (code ``gates_failed``) with the reasons."""
    info = registry.get(ref)
    check = check_candidate(registry, info, policy, unevaluated_ok=unevaluated_ok)
    if not check.passed:
        raise InvalidInput(
            f"{info.ref} may not receive traffic: {'; '.join(check.reasons)} (or set "
            "rollout.require_passed_gates: false)",
            param="model",
            code="gates_failed",
        )
    return info.ref
