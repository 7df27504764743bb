"""`llmops loop`: refusals name the field, status shows limits, history shows each cycle's numbers."""

from __future__ import annotations

import json

from tests.conftest import CliRunner
from tests.loop.conftest import LoopWorld, give_feedback, log_request
from tests.loop.loop_fakes import FakeEvaluator, FakeRetrainer, FakeRollout

from llmops.loop.config import load_config
from llmops.loop.service import LoopService


def test_unknown_names_are_refused_with_the_field(world: LoopWorld, cli: CliRunner) -> None:
    bad = cli("loop", "status", "--config", world.write_config(deployment="bott"))
    assert bad.code == 2 and "deployment" in bad.err and "Did you mean: bot" in bad.err
    missing = cli("loop", "once", "--config", world.write_config())
    assert missing.code == 2 and "deployment_spec" in missing.err


def test_status_and_history_show_triggers_and_cycles(world: LoopWorld, cli: CliRunner) -> None:
    path = world.write_config()
    status = cli("loop", "status", "--config", path, "--json")
    assert status.code == 0, status.err
    state = json.loads(status.out)
    assert state["champion"] == "bot@1" and state["live_cycle"] is None
    assert state["triggers"][0]["name"] == "schedule" and state["triggers"][0]["fired"] is True
    for i in range(40):
        request = log_request(world.home, f"frage {i} zur lieferung {i * 11}", "alt")
        give_feedback(world.home, request, thumbs="down", corrected=f"antwort {i}")
    service = LoopService(world.home, load_config(path), retrainer=FakeRetrainer(world.home, world.root),
                          evaluator=FakeEvaluator(), rollout=FakeRollout(world.home))  # fmt: skip
    assert service.once().cycle is not None
    table = cli("loop", "history", "--config", path)
    assert table.code == 0, table.err
    assert "promoted" in table.out and "bot@2" in table.out and "0.200 -> 0.700" in table.out
    (cycle,) = json.loads(cli("loop", "history", "--config", path, "--json").out)
    assert cycle["state"] == "promoted" and cycle["scores"]["fresh"]["low"] == 0.35
    assert [t["to_state"] for t in cycle["transitions"]][-1] == "promoted"
    after = json.loads(cli("loop", "status", "--config", path, "--json").out)
    assert after["champion"] == "bot@2"
    assert after["triggers"][0]["fired"] is False  # the schedule waits a day after that cycle
