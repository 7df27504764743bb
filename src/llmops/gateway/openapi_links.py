"""OpenAPI links of the gateway's document: how the answer of one operation names the resource
another one acts on, so that clients (and stateful API testers) can follow create -> use -> delete.

- a created key (``POST /api/keys``) is revoked by its ``id``;
- an OpenAI answer's ``x-request-id`` header names its row in the request log.

Deployments written through the admin API are not linked on purpose: following such a link from a
generated body replaces the deployment that serves, which is no test of the next operation.
"""

from __future__ import annotations

from typing import Any

Target = tuple[str, str, dict[str, str]]  # method, path, parameter -> runtime expression
BY_REQUEST_ID = {"request_id": "$response.header.x-request-id"}
LOGGED = {"GetLoggedRequest": ("get", "/api/requests/{request_id}", BY_REQUEST_ID)}
LINKS: dict[tuple[str, str], tuple[tuple[str, ...], dict[str, Target]]] = {
    ("post", "/api/keys"): (
        ("201",),
        {"RevokeKey": ("post", "/api/keys/{key_id}/revoke", {"key_id": "$response.body#/id"})},
    ),
    ("post", "/v1/chat/completions"): (("200",), LOGGED),
    ("post", "/v1/completions"): (("200",), LOGGED),
    ("post", "/v1/embeddings"): (("200",), LOGGED),
    ("post", "/v1/classify"): (("200",), LOGGED),
}


def add_links(document: dict[str, Any]) -> None:
    """Attach ``LINKS`` to the responses of ``document`` (operations it lacks are skipped)."""
    paths = document["paths"]
    for (method, path), (statuses, targets) in LINKS.items():
        source = paths.get(path, {}).get(method)
        if source is None:
            continue
        links = {}
        for name, (target_method, target_path, parameters) in targets.items():
            target = paths.get(target_path, {}).get(target_method)
            if target is not None and "operationId" in target:
                links[name] = {"operationId": target["operationId"], "parameters": dict(parameters)}
        for status in statuses:
            if status in source["responses"] and links:
                source["responses"][status]["links"] = links
