"""Real HTTP for tests: serve an ASGI app with uvicorn on an ephemeral loopback port in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serving(app: Any, *, lifespan: str = "on", **options: Any) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) while ``app`` serves; stop it afterwards.

    ``options`` go to ``uvicorn.Config`` (for example ``loop="uvloop", http="httptools"``).
    """
    # log_config=None: uvicorn leaves logging as it is; its own config would bind handlers to the
    # sys.stderr of the moment (a test's capture), which pytest closes when that test ends
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan=lifespan,
        **{"log_level": "warning", "log_config": None, "access_log": False, **options},
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
