"""The gateway as its own process for the reliability scenarios: what ``llmops serve`` runs with one
worker (``create_app`` under uvicorn), plus one probe route the scenarios read the process's asyncio
task count from.

``python gateway_process.py CONFIG.json`` binds an ephemeral loopback port, prints it, and serves.
The store comes from the environment (``LLMOPS_HOME``, ``LLMOPS_DATABASE_URL``), as for the CLI.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

TASKS_PATH = "/_reliability/tasks"


def probed(app: Any) -> Any:
    """``app`` with ``GET /_reliability/tasks`` answering ``{"tasks": N}`` before the gateway sees it."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == TASKS_PATH:
            tasks = asyncio.all_tasks()
            body = json.dumps({"tasks": len(tasks), "names": sorted(_task_names(tasks))}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapper


def _task_names(tasks: set[asyncio.Task[Any]]) -> list[str]:
    """Each task as its coroutine's qualified name: what a growing count is made of."""
    return [getattr(task.get_coro(), "__qualname__", repr(task.get_coro())) for task in tasks]


def main() -> None:
    import uvicorn

    from llmops.gateway.app import create_app
    from llmops.gateway.config import GatewayConfig
    from llmops.settings import get_settings
    from llmops.store.home import open_home

    config = GatewayConfig.model_validate(json.loads(Path(sys.argv[1]).read_text()))
    app = create_app(config, open_home(get_settings()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    server = uvicorn.Config(probed(app), log_level="warning", access_log=False)
    uvicorn.Server(server).run(sockets=[sock])


if __name__ == "__main__":
    main()
