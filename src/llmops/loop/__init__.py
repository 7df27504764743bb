"""The maintenance loop: triggers over monitoring data start a cycle that curates a training set from
production traffic, retrains from the champion, compares candidate and champion with paired
statistics, gates, and hands a passing candidate to a rollout.

Everything task-specific is configuration (``loop.yaml``, ``config``); a cycle is a ``LifecycleRun``
of kind ``loop`` (``cycle``), so one lease means one driver and a killed cycle resumes. This package
sits in the orchestration layer: it may import the domain packages and ``deploy``/``pipelines``,
never ``cli`` or ``dashboard``.
"""
