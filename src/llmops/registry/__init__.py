"""The model registry: registered models, versions, aliases, lineage, model cards, file safety.

Owns which model files are which version, and what produced them. Imports only ``store``,
``tracking`` records via the store schema, ``settings`` and ``errors``; never serving packages.
"""

from llmops.registry.client import Registry
from llmops.registry.records import AliasMove, DatasetUse, ModelSummary, ModelVersionInfo
from llmops.registry.references import ModelRef, parse_ref

__all__ = ["AliasMove", "DatasetUse", "ModelRef", "ModelSummary", "ModelVersionInfo", "Registry", "parse_ref"]
