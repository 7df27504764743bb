"""Roles of API keys, ordered by what they may do: consumer < developer < deployer < admin.

A role includes every lower one. Consumers call models; developers also read the gateway's state
(deployments, request log); deployers change deployments, replicas and traffic splits; admins also
manage keys. Imports nothing above ``errors``.
"""

from __future__ import annotations

from enum import IntEnum

from llmops.errors import InvalidInput


class Role(IntEnum):
    """A key's role; a higher value may do everything a lower one may."""

    CONSUMER = 10
    DEVELOPER = 20
    DEPLOYER = 30
    ADMIN = 40

    @property
    def label(self) -> str:
        return self.name.lower()

    def allows(self, needed: Role) -> bool:
        """True when this role may do what ``needed`` may."""
        return self >= needed


ROLE_NAMES: tuple[str, ...] = tuple(role.label for role in Role)


def parse_role(value: str | Role) -> Role:
    """The role named ``value`` (case-insensitive); ``InvalidInput`` naming the choices otherwise."""
    if isinstance(value, Role):
        return value
    try:
        return Role[value.strip().upper()]
    except KeyError:
        raise InvalidInput(
            f"unknown role {value!r}; use one of: {', '.join(ROLE_NAMES)}", param="role"
        ) from None
