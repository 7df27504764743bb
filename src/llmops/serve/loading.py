"""Resolve what a replica serves: a base model directory and the LoRA adapters to load on it.

A model is named by a registry reference (``name``, ``name@3``, ``name@production``: the version's
verified files) or by a local directory saved with ``save_pretrained``. Either may be a PEFT adapter:
it is then served on its base (the registry records the base of an adapter version; for a local
adapter, ``--base`` or the adapter's own ``base_model_name_or_path`` when that is a local directory),
and the served model name selects it. An encoder (format ``hf-encoder``) is served alone: it takes
no base and no adapters. Extra adapters (``NAME=REF_OR_PATH``) are loaded beside it;
registry adapters must have been tuned from the served base. Only safetensors directories pass
(``inspect_model_dir`` refuses pickle files); nothing is ever fetched from a hub.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmops.errors import InvalidInput
from llmops.registry.client import Registry
from llmops.registry.safety import ModelFormat, inspect_model_dir
from llmops.store.home import Home, open_home


@dataclass(frozen=True)
class ResolvedModel:
    """What to load: the base directory, adapters by name, and the names to serve them under."""

    base_dir: Path
    default_name: str
    adapters: dict[str, Path] = field(default_factory=dict)
    default_adapter: str | None = None  # the adapter the served model name selects
    format: ModelFormat = "hf-causal-lm"  # of the base: hf-causal-lm (a decoder) or hf-encoder

    @property
    def is_encoder(self) -> bool:
        return self.format == "hf-encoder"


@dataclass(frozen=True)
class _Located:
    path: Path
    format: ModelFormat
    name: str
    config: dict[str, object]
    registry_base: str | None = None  # the base version of a registry adapter


class _Locator:
    """Finds model directories on disk or in the registry (opened only when a reference is used)."""

    def __init__(self, open_store: Callable[[], Home] | None) -> None:
        self._open_store = open_store or open_home
        self._registry: Registry | None = None

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.from_home(self._open_store())
        return self._registry

    def locate(self, spec: str) -> _Located:
        path = Path(spec).expanduser()
        if path.exists():
            info = inspect_model_dir(path)
            return _Located(info.path.resolve(), info.format, info.path.resolve().name, info.config)
        if "/" in spec or spec.startswith("."):
            raise InvalidInput(f"model path does not exist: {spec}", param="model")
        version = self.registry().get(spec)
        info = inspect_model_dir(self.registry().local_path(spec))
        return _Located(info.path, info.format, version.name, info.config, version.base)

    def base_of(self, adapter: _Located, base: str | None) -> Path:
        """The base model directory of a PEFT adapter."""
        hinted = adapter.config.get("base_model_name_or_path")
        if base is not None:
            spec = base
        elif adapter.registry_base is not None:
            spec = adapter.registry_base
        elif isinstance(hinted, str) and Path(hinted).expanduser().is_dir():
            spec = hinted
        else:
            raise InvalidInput(
                f"{adapter.name!r} is a PEFT adapter: name its base model with --base REF_OR_PATH",
                param="base",
            )
        located = self.locate(spec)
        if located.format != "hf-causal-lm":
            raise InvalidInput(
                f"the base {spec!r} is not a full model (it is a {located.format})", param="base"
            )
        if adapter.registry_base is not None and base is not None:
            recorded = self.locate(adapter.registry_base).path
            if recorded != located.path:
                raise InvalidInput(
                    f"{adapter.name!r} was tuned from {adapter.registry_base}, not from {base!r}",
                    param="base",
                )
        return located.path


def parse_adapter_option(option: str) -> tuple[str | None, str]:
    """``NAME=REF_OR_PATH`` or ``REF_OR_PATH`` (then named after the model or directory)."""
    name, sep, spec = option.partition("=")
    if not sep:
        return None, option
    if not name or not spec:
        raise InvalidInput(f"--adapter takes NAME=REF_OR_PATH, got {option!r}", param="adapter")
    return name, spec


def resolve_model(
    spec: str,
    *,
    base: str | None = None,
    adapters: Sequence[str] = (),
    open_store: Callable[[], Home] | None = None,
) -> ResolvedModel:
    """Resolve ``spec`` (and extra adapters) to directories; raise InvalidInput/NotFound naming the fix.

    ``open_store`` opens the home whose registry resolves references (default: the environment's);
    it is called only when a reference, not a path, is given.
    """
    locator = _Locator(open_store)
    main = locator.locate(spec)
    default_name = main.name if Path(spec).expanduser().exists() else spec
    loaded: dict[str, Path] = {}
    default_adapter = None
    if main.format == "hf-encoder":
        return _encoder(main, default_name, base=base, adapters=adapters)
    if main.format == "hf-causal-lm":
        if base is not None:
            raise InvalidInput("--base is only for serving a PEFT adapter", param="base")
        base_dir = main.path
    else:
        base_dir = locator.base_of(main, base)
        default_adapter = main.name
        loaded[main.name] = main.path
    for option in adapters:
        name, adapter_spec = parse_adapter_option(option)
        located = locator.locate(adapter_spec)
        if located.format != "peft-adapter":
            raise InvalidInput(f"--adapter {adapter_spec!r} is not a PEFT adapter", param="adapter")
        if located.registry_base is not None and locator.locate(located.registry_base).path != base_dir:
            raise InvalidInput(
                f"adapter {adapter_spec!r} was tuned from {located.registry_base}, not the served base",
                param="adapter",
            )
        name = name or located.name
        if name in loaded:
            raise InvalidInput(
                f"two adapters are named {name!r}; name them with NAME=REF_OR_PATH", param="adapter"
            )
        loaded[name] = located.path
    return ResolvedModel(base_dir, default_name, loaded, default_adapter)


def _encoder(
    main: _Located, default_name: str, *, base: str | None, adapters: Sequence[str]
) -> ResolvedModel:
    """An encoder version: served as it is, without a base or LoRA adapters."""
    if base is not None:
        raise InvalidInput(f"{main.name!r} is an encoder: it is served alone, without --base", param="base")
    if adapters:
        raise InvalidInput(
            f"{main.name!r} is an encoder: LoRA adapters are served on decoders only", param="adapter"
        )
    return ResolvedModel(main.path, default_name, format="hf-encoder")
