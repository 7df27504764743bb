"""The states of a maintenance cycle (a ``LifecycleRun`` of kind ``loop``) and the edges between them.

::

    triggered -> curated -> trained -> evaluated -> gated -> rolling_out -> promoted
        |            |          |           |                      |-----> rolled_back
        v            v          v           v--> rejected (gate failed)
     stopped      failed     failed      failed    (any working state may fail)

``stopped``: curation found too few rows, nothing was trained. ``rejected``: the candidate failed the
gate and never reached traffic. ``rolled_back``: the rollout pulled it back. Terminal states end
the run; the history of each run is the audited record of the cycle.
"""

from __future__ import annotations

from llmops.store.lifecycle import StateMachine

KIND = "loop"
TRIGGERED = "triggered"
CURATED = "curated"
TRAINED = "trained"
EVALUATED = "evaluated"
GATED = "gated"
ROLLING_OUT = "rolling_out"
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
REJECTED = "rejected"
STOPPED = "stopped"
FAILED = "failed"

TERMINAL = (PROMOTED, ROLLED_BACK, REJECTED, STOPPED, FAILED)

CYCLE_MACHINE = StateMachine(
    kind=KIND,
    initial=TRIGGERED,
    edges={
        TRIGGERED: frozenset({CURATED, STOPPED, FAILED}),
        CURATED: frozenset({TRAINED, FAILED}),
        TRAINED: frozenset({EVALUATED, FAILED}),
        EVALUATED: frozenset({GATED, REJECTED, FAILED}),
        GATED: frozenset({ROLLING_OUT, FAILED}),
        ROLLING_OUT: frozenset({PROMOTED, ROLLED_BACK, FAILED}),
    },
)
