"""schemathesis ``--checks all`` against the gateway's OpenAPI document, with an admin key: 0 failures.

The gateway fronts one deployment served by an in-process replica over the serve tests' fake
backend (without its 64-token context: whether a prompt fits is a matter of tokens no schema can
state). The stateful phase follows the links schemathesis infers between the admin operations,
except the ones that change a named deployment: a scenario may take the name ``fake-model`` from
the deployments list and add an arm without replicas but with most of the weight (or remove the
only replica), after which the gateway rightly answers 503 ``no_healthy_replica`` to the traffic
sent there, which the server-error check counts as a failure. Those
operations still run in the examples, coverage and fuzzing phases. The request search refuses a
window whose ``since`` is not before its ``until`` (400 naming ``since``), a rule across two
parameters that no JSON Schema states, so for those two operations a 400 is an expected answer to
schema-valid input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.reliability.schemathesis_run import run_schemathesis
from tests.reliability.test_schemathesis_replica import RoomyBackend

from llmops.gateway.app import create_app
from llmops.gateway.config import GatewayConfig
from llmops.gateway.upstreams import AsgiUpstream
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.serve import ServeConfig
from llmops.serve import build_app as replica_app
from llmops.store.home import Home

pytestmark = pytest.mark.slow

_CONFIG = """
[[operations]]
include-name = [
    "PUT /api/deployments/{name}",
    "DELETE /api/deployments/{name}",
    "PUT /api/deployments/{name}/arms/{arm}",
    "DELETE /api/deployments/{name}/arms/{arm}",
    "POST /api/deployments/{name}/arms/{arm}/replicas",
    "DELETE /api/deployments/{name}/arms/{arm}/replicas",
    "PUT /api/deployments/{name}/split",
]
phases.stateful.enabled = false

[[operations]]
include-name = ["GET /api/requests", "GET /api/requests/export"]
checks.positive_data_acceptance.expected-statuses = [200, 400, 401, 403, 404, 429]
"""


def test_schemathesis_finds_no_failure_in_the_gateway(sqlite_home: Home, tmp_path: Path) -> None:
    key = KeyStore.from_home(sqlite_home).create(KeySpec(name="admin", role=Role.ADMIN)).key
    config = GatewayConfig.model_validate(
        {
            "allow_loopback_upstreams": True,
            "deployments": [
                {
                    "name": "fake-model",
                    "price": {"input_usd_per_1k_tokens": 1.0, "output_usd_per_1k_tokens": 2.0},
                }
            ],
            "request_log": {"flush_interval_s": 0.05},
        }
    )
    replica = replica_app(RoomyBackend(delay=0), "fake-model", ServeConfig())
    app = create_app(
        config,
        sqlite_home,
        in_process={"fake-model": [AsgiUpstream(replica, name="replica-1")]},
        active_health_checks=False,
    )
    run = run_schemathesis(
        app,
        tmp_path,
        max_examples=25,
        headers={"Authorization": f"Bearer {key}"},
        config_toml=_CONFIG,
    )
    print(run.output[-3000:])
    assert run.cases > 500, run.output[-3000:]
    assert run.returncode == 0 and run.failures == 0, run.output[-30000:]
