"""The rollout's finishing moves: promote the candidate, or restore the exact stable version.

Both are idempotent and record their progress (``finish_stage``) in the run, so a controller killed
half-way repeats only what is left. Order matters for traffic: a split is written and given
``settle_s`` to reach every gateway worker before the target removes or replaces replicas, and
re-asserted after every target call.

Promotion: everything to the candidate's arm; move the alias (audited by the registry); the stable
track is re-applied on the candidate's exact version (new replicas ready before the old ones drain);
both arms weighted while the stable arm takes over; the candidate's track is deleted.
Rollback and abort: everything to stable; the candidate's tracks are deleted; the alias is put back
on the stable version if anything moved it, and that version's digest must still be the one the
rollout started from (the exact previous version, not whatever now carries its number).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from llmops.deploy.rollout_state import RolloutData
from llmops.deploy.target import CANARY, SHADOW, STABLE
from llmops.deploy.traffic import ensure_weights
from llmops.errors import IntegrityError, NotFound
from llmops.store.lifecycle import Lifecycle, LifecycleRecord

if TYPE_CHECKING:
    from llmops.deploy.rollout import RolloutEnv


def _stage(runs: Lifecycle, record: LifecycleRecord, env: RolloutEnv, done: list[str], name: str) -> None:
    done.append(name)
    runs.update(record.id, env.holder, {"finish_stage": ",".join(done)})


def _weights(env: RolloutEnv, data: RolloutData, stable: float, canary: float, reason: str) -> None:
    if ensure_weights(
        env.store, data.deployment, {STABLE: stable, CANARY: canary}, actor=env.holder, reason=reason
    ):
        env.sleep(env.settle_s)


def _alias_version(env: RolloutEnv, name: str, alias: str) -> int | None:
    try:
        return env.registry.get(f"{name}@{alias}").version
    except NotFound:
        return None


def promote(env: RolloutEnv, runs: Lifecycle, record: LifecycleRecord, data: RolloutData) -> dict[str, Any]:
    """Make the candidate the stable version; the numbers of the promotion."""
    policy, spec = data.rollout_policy(), data.deployment_spec()
    done = [s for s in (data.finish_stage or "").split(",") if s]
    why = f"rollout {record.id}: promote {data.candidate.ref}"
    alias_now = _alias_version(env, data.stable.name, policy.alias)
    alias_before = data.stable.version if "alias" in done else alias_now
    if "alias" not in done:
        _weights(env, data, 0.0, 100.0, why)
        if alias_now != data.candidate.version:
            env.registry.set_alias(data.stable.name, policy.alias, data.candidate.version, reason=why)
        _stage(runs, record, env, done, "alias")
    if "stable_track" not in done:
        env.target.apply(spec, track=STABLE, model=data.candidate.ref)
        _weights(env, data, 100.0, 100.0, why + " (stable track now serves it)")
        _stage(runs, record, env, done, "stable_track")
    _weights(env, data, 100.0, 0.0, why)
    with contextlib.suppress(NotFound):  # already deleted by a run that was killed after it
        env.target.delete(data.deployment, track=CANARY)
    ensure_weights(env.store, data.deployment, {STABLE: 100.0}, actor=env.holder, reason=why)
    return {
        "alias": policy.alias,
        "alias_before": alias_before,
        "alias_after": data.candidate.version,
        "candidate_digest": data.candidate.digest,
        "last_analysis": data.last_analysis,
    }


def restore_stable(
    env: RolloutEnv, runs: Lifecycle, record: LifecycleRecord, data: RolloutData
) -> dict[str, Any]:
    """Put all traffic back on the exact stable version and remove the candidate; the numbers."""
    policy = data.rollout_policy()
    why = f"rollout {record.id}: restore {data.stable.ref}"
    _weights(env, data, 100.0, 0.0, why)
    for track in (CANARY, SHADOW):
        with contextlib.suppress(NotFound):  # a track that never started
            env.target.delete(data.deployment, track=track)
    ensure_weights(env.store, data.deployment, {STABLE: 100.0, CANARY: 0.0}, actor=env.holder, reason=why)
    stable = env.registry.get(data.stable.ref)
    if stable.digest != data.stable.digest:
        raise IntegrityError(
            f"{data.stable.ref} now has digest {stable.digest[:12]}, not {data.stable.digest[:12]} as "
            "when the rollout started; refusing to restore a different model under the same number",
            code="stable_digest_changed",
        )
    alias_before = _alias_version(env, data.stable.name, policy.alias)
    if alias_before is not None and alias_before != data.stable.version:
        env.registry.set_alias(data.stable.name, policy.alias, data.stable.version, reason=why)
    return {
        "restored": data.stable.ref,
        "digest": data.stable.digest,
        "alias": policy.alias,
        "alias_before": alias_before,
        "candidate": data.candidate.ref,
    }
