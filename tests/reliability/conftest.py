"""Reliability fixtures: the gateway kit and the replica's fake backend, shared with their folders."""

from __future__ import annotations

from tests.gateway.conftest import anyio_backend, gw, make_key  # noqa: F401 (fixtures)
from tests.serve.conftest import FakeBackend

__all__ = ["FakeBackend"]
