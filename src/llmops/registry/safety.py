"""Model-file safety checks run before anything is registered or loaded.

Only safetensors weights are accepted: pickle-based files can run code when loaded. A directory is
a Hugging Face causal LM (``config.json``), an encoder (``config.json`` of a BERT-family model, format
``hf-encoder``) or a PEFT adapter (``adapter_config.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmops.errors import InvalidInput
from llmops.security.model_files import check_model_dir, check_trust_remote_code

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ModelFormat = Literal["hf-causal-lm", "hf-encoder", "peft-adapter"]
# model_type values of the encoder families llmops trains and serves (``train.encoder``)
ENCODER_MODEL_TYPES = frozenset({"bert"})


@dataclass(frozen=True)
class ModelDirInfo:
    path: Path
    format: ModelFormat
    config: dict[str, object]
    weight_files: tuple[str, ...]


def inspect_model_dir(
    path: Path, *, remote_code_allow: frozenset[str] = frozenset(), ident: str = ""
) -> ModelDirInfo:
    """Validate a model directory and say what it holds; raise ``InvalidInput`` naming the fix.

    Besides the layout, every safetensors header is validated with bounded memory (an absurd
    header length or out-of-bounds offsets is refused), pickle payloads are refused by content as
    well as by name, and a config that needs remote code (``auto_map``) is refused (``Forbidden``)
    unless ``ident`` is on ``remote_code_allow``.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"model path does not exist: {path}", param="path")
    if not path.is_dir():
        raise InvalidInput(f"model path must be a directory saved with save_pretrained: {path}", param="path")
    pickled = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise InvalidInput(
            f"refusing pickle-based weights ({', '.join(pickled)}): they can run code when loaded. "
            "Convert them to safetensors, e.g. `model.save_pretrained(dir, safe_serialization=True)` "
            "after loading them once in a trusted environment, and register that directory",
            param="path",
        )
    weights = tuple(sorted(p.relative_to(path).as_posix() for p in path.rglob("*.safetensors")))
    if (path / "adapter_config.json").exists():
        kind: ModelFormat = "peft-adapter"
        config = _read_json(path / "adapter_config.json")
    elif (path / "config.json").exists():
        config = _read_json(path / "config.json")
        kind = "hf-encoder" if config.get("model_type") in ENCODER_MODEL_TYPES else "hf-causal-lm"
    else:
        raise InvalidInput(
            f"{path} has no config.json (nor adapter_config.json): save the model with save_pretrained",
            param="path",
        )
    if not weights:
        raise InvalidInput(f"{path} holds no *.safetensors weights", param="path")
    check_model_dir(path)
    check_trust_remote_code(config, remote_code_allow, ident)
    return ModelDirInfo(path, kind, config, weights)


def _read_json(path: Path) -> dict[str, object]:
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path.name} is not valid JSON: {exc}", param="path") from exc
    if not isinstance(body, dict):
        raise InvalidInput(f"{path.name} must hold a JSON object", param="path")
    return body
