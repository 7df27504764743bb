"""PII detection: run the recognisers of the configured types and resolve overlapping findings.

``PIIDetector(config).detect(text)`` returns non-overlapping findings sorted by position. Where two
recognisers claim overlapping text, the higher score wins, then the longer span (an IBAN beats the
card-like digits inside it, a ``sk-`` key beats the same token seen as merely high-entropy).
Redaction of the findings lives in ``redaction``.
"""

from __future__ import annotations

from llmops.security.pii_recognisers import RECOGNISERS
from llmops.security.pii_types import Finding, PIIConfig, PIIType

__all__ = ["Finding", "PIIConfig", "PIIDetector", "PIIType", "resolve_overlaps"]


def resolve_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep a non-overlapping subset: best score first, then longest, then earliest; sorted by start."""
    ranked = sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start, f.type.value))
    kept: list[Finding] = []
    for finding in ranked:
        if not any(finding.overlaps(other) for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


class PIIDetector:
    """Finds personal data and secrets in text. Stateless after construction; safe to share."""

    def __init__(self, config: PIIConfig | None = None) -> None:
        self.config = config or PIIConfig()

    def detect(self, text: str) -> list[Finding]:
        """Every finding of the configured types scored at least ``min_score``, without overlaps."""
        config = self.config
        found: list[Finding] = []
        for kind in sorted(config.types):
            for finding in RECOGNISERS[kind](text, config):
                if finding.score >= config.min_score and finding.text not in config.allow_values:
                    found.append(finding)
        return resolve_overlaps(found)

    def contains(self, text: str) -> bool:
        """True when ``detect`` would return anything."""
        return bool(self.detect(text))
