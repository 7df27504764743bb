"""Monitoring: drift detection, online evaluation, feedback, alerting, and their Prometheus metrics.

Owns:

* ``drift`` / ``drift_features`` / ``drift_stats`` / ``drift_config``: reference profiles of
  prompts (length, vocabulary, label mix, embeddings) and their comparison with a window (PSI,
  Kolmogorov-Smirnov, chi-square, standardised mean shift, MMD); ``drift_monitor``: rolling windows
  per model version checked on demand or on a schedule; ``drift_sources``: prompts from datasets and
  the request log, profiles as artifacts;
* ``alert_rules`` / ``alerts`` / ``alert_history`` / ``webhook``: alert rules (YAML), firing and
  resolved state, de-duplicated webhook notifications with retries, alert history;
* ``online_eval`` / ``online_eval_queue``: reference-free scoring of a sampled share of traffic;
* ``feedback``: the feedback message and per-version aggregates;
* ``metrics``: every ``llmops_drift_*``, ``llmops_online_eval_*``, ``llmops_feedback_*``,
  ``llmops_alert*`` and ``llmops_key_budget_*`` metric; ``service``: all of it wired together.

May import ``store``, ``data``, ``evals``, ``errors`` and ``settings``. Must not import ``serve``,
``gateway``, ``deploy``, ``cli`` or anything else above the domain layer: the gateway feeds this
package typed values and mounts its metrics.
"""
