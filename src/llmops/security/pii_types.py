"""The typed vocabulary of PII detection: entity types, findings and the detector's configuration.

Kept apart from the recognisers and the detector so both can import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator


class PIIType(StrEnum):
    """What a finding is; the value is also the label used in masks and placeholders."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    CREDIT_CARD = "CREDIT_CARD"
    IBAN = "IBAN"
    IP_ADDRESS = "IP_ADDRESS"
    US_SSN = "US_SSN"
    SECRET = "SECRET"


@dataclass(frozen=True)
class Finding:
    """One detected span: ``text == source[start:end]``; ``score`` in [0, 1] is the confidence."""

    type: PIIType
    start: int
    end: int
    text: str
    score: float
    recogniser: str = ""

    def overlaps(self, other: Finding) -> bool:
        return self.start < other.end and other.start < self.end


class PIIConfig(BaseModel):
    """Which entities to look for and how strict to be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: frozenset[PIIType] = Field(
        default=frozenset(PIIType), description="Entity types to detect; the others are ignored."
    )
    default_region: str = Field(
        default="US",
        description="ISO 3166 region used to read phone numbers written without a +country code.",
    )
    bare_phone_needs_context: bool = Field(
        default=True,
        description=(
            "Report a phone number written as bare digits (no +, spaces, dashes, dots or brackets) only "
            "when a word like 'phone' or 'call' precedes it; order numbers are often valid numbers."
        ),
    )
    entropy_threshold: float = Field(
        default=3.5,
        ge=0.0,
        le=8.0,
        description="Shannon entropy (bits per character) above which an unlabelled token is a secret.",
    )
    entropy_min_length: int = Field(
        default=20, ge=8, description="Shortest unlabelled token the entropy rule considers."
    )
    min_score: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Findings scored below this are dropped."
    )
    allow_values: frozenset[str] = Field(
        default=frozenset(),
        description="Exact values never reported (for example the public support address).",
    )

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r}; use an ISO 3166 code such as US, GB or DE")
        return region
