"""The deployment layer: deployment specs, deploy targets and the rollout controller.

Owns: ``deployment.yaml`` (``spec``), the rollout policy (``policy``), the ``DeployTarget``s that
render and apply a deployment (local processes, Kubernetes, Ray Serve) and the rollout controller
that moves traffic to a candidate step by step and promotes or rolls back on measured analysis.
Must not import: ``cli``, ``dashboard`` (leaves), nor ``pipelines``/``loop`` internals beyond their
public entry points (same layer, no cycles).
"""
