"""The Kubernetes target: a deployment spec rendered as a kustomize base and overlays
(``manifests``, ``bundle``), and applied through the official ``kubernetes`` client (``target``).

Rendering needs no cluster and no optional dependency; applying needs the ``kubernetes`` extra.
"""
