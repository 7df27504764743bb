"""Dashboard fixtures: one seeded store per module (tiny models, evaluations, a rollout, requests)
and logged-in test clients of the gateway serving the dashboard under /ui."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient
from tests.dashboard.seed import Seeded, seed_store

from llmops.dashboard import mount_dashboard
from llmops.gateway.app import create_app
from llmops.gateway.config import GatewayConfig
from llmops.settings import Settings
from llmops.store.home import open_home

Login = Callable[[str], TestClient]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    tmp = tmp_path_factory.mktemp("dashboard")
    return seed_store(open_home(Settings(home=tmp / "home")), tmp)


def login_client(client: TestClient, key: str) -> TestClient:
    """Log ``client`` in through the login form (token from the form's cookie, as a browser does)."""
    client.cookies.clear()  # a browser of its own: no session of an earlier login
    client.get("/ui/login")
    token = client.cookies.get("llmops_login")
    response = client.post(
        "/ui/login", data={"key": key, "csrf": token, "next": "/ui/"}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def gateway_client(seeded: Seeded) -> Iterator[TestClient]:
    """The gateway (no deployments in its file) with the dashboard mounted, over the seeded store."""
    app = create_app(
        GatewayConfig.model_validate({"deployments": []}), seeded.home, active_health_checks=False
    )
    mount_dashboard(app)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def login(gateway_client: TestClient, seeded: Seeded) -> Login:
    def as_role(label: str) -> TestClient:
        return login_client(gateway_client, seeded.keys[label])

    return as_role
