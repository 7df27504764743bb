"""Model references: ``name@3`` (a version), ``name@production`` (an alias), ``name`` (the latest)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmops.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
VERSION_RE = re.compile(r"^[0-9]{1,18}$")  # ASCII digits that fit a 64-bit integer column
# a whole reference, for API schemas: name, name@N or name@alias
MODEL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}(@([0-9]{1,18}|[A-Za-z][A-Za-z0-9_-]{0,99}))?$"


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: str, param: str = "name") -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidInput(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 200 characters)",
            param=param,
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_RE.match(alias or ""):
        raise InvalidInput(
            f"invalid alias {alias!r}: start with a letter, then letters, digits, '_' or '-'", param="alias"
        )
    return alias


def parse_ref(text: str) -> ModelRef:
    """Parse ``name``, ``name@<int>`` or ``name@<alias>``."""
    name, sep, suffix = (text or "").strip().partition("@")
    check_name(name, param="model")
    if not sep:
        return ModelRef(name)
    if VERSION_RE.match(suffix):
        return ModelRef(name, version=int(suffix))
    if suffix.isdigit():
        raise InvalidInput(f"version in {text!r} must be 1 to 18 ASCII digits", param="model")
    if not suffix:
        raise InvalidInput(f"reference {text!r} ends with '@': add a version or alias", param="model")
    return ModelRef(name, alias=check_alias(suffix))
