"""Bounded YAML for files a user hands over (recipes, suites, pipelines, specs, configs).

``yaml.safe_load`` builds anchors and aliases as shared references, so a ten-line "billion laughs"
file loads at once and then hangs whatever walks it (validation, hashing, ``json.dumps``); a
self-referencing alias makes the walk endless; a multi-megabyte scalar is read as is.
``load_yaml`` is ``safe_load`` with limits checked on the composed node graph before anything
is built: the text's length, each scalar's length, the nesting depth, and the number of nodes
the document has once every alias is expanded. A refusal is a ``yaml.YAMLError``
(``YAMLLimitError``), so every loader's existing "not valid YAML" path names the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmops.errors import InvalidInput

MAX_CHARS = 16 << 20
MAX_SCALAR_CHARS = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 200_000

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class YAMLLimitError(yaml.YAMLError):
    """A YAML document past one of ``load_yaml``'s limits."""


def _where(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


class _Sizer:
    def __init__(self, max_nodes: int, max_depth: int, max_scalar_chars: int) -> None:
        self.max_nodes, self.max_depth, self.max_scalar_chars = max_nodes, max_depth, max_scalar_chars
        self.sizes: dict[int, int] = {}

    def size(self, node: yaml.Node, depth: int = 0) -> int:
        """Nodes under ``node`` with aliases expanded (each shared node is sized once)."""
        if depth > self.max_depth:
            raise YAMLLimitError(f"nested deeper than {self.max_depth} levels at {_where(node)}")
        known = self.sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > self.max_scalar_chars:
                raise YAMLLimitError(
                    f"a value of {len(node.value)} characters at {_where(node)}; "
                    f"at most {self.max_scalar_chars} are accepted"
                )
            total = 1
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(self.size(item, depth + 1) for item in node.value)
        else:
            total = 1 + sum(self.size(k, depth + 1) + self.size(v, depth + 1) for k, v in node.value)
        if total > self.max_nodes:
            raise YAMLLimitError(
                f"the document expands to more than {self.max_nodes} values (anchors and aliases "
                f"included) at {_where(node)}; write it out or split it"
            )
        self.sizes[id(node)] = total
        return total


def load_yaml(
    text: str,
    *,
    max_chars: int = MAX_CHARS,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
    max_scalar_chars: int = MAX_SCALAR_CHARS,
) -> Any:
    """``yaml.safe_load(text)`` within limits; ``YAMLLimitError`` (a ``yaml.YAMLError``) past one."""
    if len(text) > max_chars:
        raise YAMLLimitError(f"{len(text)} characters; at most {max_chars} are accepted")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Sizer(max_nodes, max_depth, max_scalar_chars).size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, *, what: str, param: str) -> Any:
    """The YAML document in ``path``, loaded within limits; ``InvalidInput`` naming the file (and
    ``param``) when it cannot be read or is not valid YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror}", param=param) from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}", param=param) from None
