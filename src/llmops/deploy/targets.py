"""Which ``DeployTarget`` a command drives, by name: the one place a target implementation is chosen.

Targets are imported lazily (a Kubernetes or Ray Serve target pulls in optional dependencies), so a
command names a target (``--target local``) and gets it built from the home, or a clear error saying
which targets this installation has.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from llmops.deploy.target import DeployTarget
from llmops.errors import InvalidInput
from llmops.store.home import Home

# name -> "module:attribute", where attribute(home) builds the target
TARGETS: dict[str, str] = {
    "local": "llmops.deploy.local:LocalTarget.from_home",
    "kubernetes": "llmops.deploy.kubernetes.target:KubernetesTarget.from_home",
    "ray": "llmops.deploy.ray.target:RayTarget.from_home",
}
# name -> the extra that installs what the target imports
EXTRAS: dict[str, str] = {"kubernetes": "kubernetes", "ray": "ray"}


def open_target(name: str, home: Home) -> DeployTarget:
    spec = TARGETS.get(name)
    if spec is None:
        raise InvalidInput(
            f"unknown deploy target {name!r}; targets: {', '.join(sorted(TARGETS))}", param="target"
        )
    module_name, _, attribute = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        extra = f"; pip install 'llmops[{EXTRAS[name]}]'" if name in EXTRAS else ""
        raise InvalidInput(
            f"deploy target {name!r} is not available in this installation ({exc}){extra}", param="target"
        ) from None
    for part in attribute.split("."):
        found = getattr(found, part)
    return cast(DeployTarget, found(home))
