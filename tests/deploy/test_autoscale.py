"""The local autoscaler's decision: out on queue, running or TTFT, in when quiet, never inside the
cooldown, always within min..max."""

from __future__ import annotations

from llmops.deploy.autoscale import AutoscalePolicy, LoadSample, decide

POLICY = AutoscalePolicy(queue_per_replica=2, running_per_replica=4, cooldown_s=30)


def run(replicas: int, waiting: float, running: float, ttft: float | None = None, since: float = 60.0):  # type: ignore[no-untyped-def]
    return decide(
        LoadSample(replicas, waiting, running, ttft), POLICY, minimum=1, maximum=4, ttft_slo_ms=500,
        since_last_change_s=since,
    )  # fmt: skip


def test_a_burst_scales_out_to_what_the_queue_needs_capped_at_max() -> None:
    assert run(1, waiting=6, running=4).desired == 3
    assert run(1, waiting=40, running=4).desired == 4
    assert run(1, waiting=40, running=4).reason == "load above target"


def test_running_requests_alone_scale_out() -> None:
    assert run(2, waiting=0, running=12).desired == 3


def test_ttft_over_the_slo_adds_a_replica() -> None:
    decision = run(2, waiting=0, running=2, ttft=900)
    assert (decision.desired, decision.reason) == (3, "p95 TTFT above the SLO")


def test_quiet_load_scales_in_one_at_a_time_down_to_min() -> None:
    assert run(3, waiting=0, running=1, ttft=100).desired == 2
    assert run(1, waiting=0, running=0).desired == 1


def test_cooldown_holds_any_change() -> None:
    decision = run(1, waiting=40, running=4, since=5)
    assert (decision.desired, decision.reason, decision.changes) == (1, "cooldown", False)
    assert decision.numbers["waiting_per_replica"] == 40


def test_moderate_load_is_steady() -> None:
    assert run(2, waiting=2, running=4, ttft=300).reason == "steady"
