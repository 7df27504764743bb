"""How ``llmops serve --workers N`` hands its resolved configuration to the worker processes.

The configuration goes to ``HOME/gateway-config.json`` (0600, like every file in the home) without
its credentials: the Redis URL, the alert webhooks (their URLs carry tokens, their headers
authorisation) and any other URL holding a password are written as null, and the values taken out
travel in the environment (``LLMOPS_GATEWAY_SECRETS``), which the processes uvicorn starts inherit
and only the user can read. Each worker reads the file and puts the values back
(``worker_config``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmops.errors import InvalidInput
from llmops.gateway.config import GatewayConfig
from llmops.store.private_files import write_private

CONFIG_ENV = "LLMOPS_GATEWAY_CONFIG_FILE"
SECRETS_ENV = "LLMOPS_GATEWAY_SECRETS"
CONFIG_FILE = "gateway-config.json"
SECRET_KEYS = frozenset({"redis_url", "webhooks"})
Secret = tuple[list[str | int], Any]


def hand_to_workers(config: GatewayConfig, home: Path) -> Path:
    """Write the config for the workers (credentials left out) and set the workers' environment."""
    secrets: list[Secret] = []
    public = _without_secrets(config.model_dump(mode="json"), [], secrets)
    path = write_private(home / CONFIG_FILE, json.dumps(public))
    os.environ[CONFIG_ENV] = str(path)
    os.environ[SECRETS_ENV] = json.dumps(secrets)
    return path


def worker_config() -> GatewayConfig:
    """The config ``hand_to_workers`` wrote, with its credentials put back from the environment."""
    data = json.loads(Path(os.environ[CONFIG_ENV]).read_text(encoding="utf-8"))
    for path, value in json.loads(os.environ.get(SECRETS_ENV, "[]")):
        *parents, last = path
        holder = data
        for step in parents:
            holder = holder[step]
        holder[last] = value
    try:
        return GatewayConfig.model_validate(data)
    except ValueError as exc:
        raise InvalidInput(f"the workers' gateway config is invalid: {exc}", param="config") from None


def _without_secrets(value: Any, path: list[str | int], secrets: list[Secret]) -> Any:
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if key in SECRET_KEYS and item:
                secrets.append(([*path, key], item))
                kept[key] = None
            else:
                kept[key] = _without_secrets(item, [*path, key], secrets)
        return kept
    if isinstance(value, list):
        return [_without_secrets(item, [*path, index], secrets) for index, item in enumerate(value)]
    if isinstance(value, str) and _has_password(value):
        secrets.append((path, value))
        return None
    return value


def _has_password(text: str) -> bool:
    if "://" not in text:
        return False
    try:
        return urlsplit(text).password is not None
    except ValueError:
        return False
