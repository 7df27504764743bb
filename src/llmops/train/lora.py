"""LoRA adapters with peft: check the targets, wrap the model, save and load the adapter.

Targets are checked against the model's own module names before any step runs, so a typo such as
``q_prj`` fails at once with the list of valid names instead of deep inside peft or, worse, after
an hour of training with nothing adapted.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from llmops.errors import InvalidInput
from llmops.train.recipe import LoraSpec

ALL_LINEAR = "all-linear"
_ADAPTABLE = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d)


def adaptable_module_names(model: torch.nn.Module) -> list[str]:
    """Last name components of the layers LoRA can adapt (the output head excluded), sorted."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, _ADAPTABLE) and name and not name.endswith("lm_head")
    }
    return sorted(names)


def validate_target_modules(model: torch.nn.Module, targets: list[str]) -> None:
    """Raise ``InvalidInput`` naming the unknown targets and listing the valid ones."""
    if targets == [ALL_LINEAR]:
        return
    full_names = [name for name, module in model.named_modules() if isinstance(module, _ADAPTABLE)]
    # peft matches a target against the end of a module's dotted name, e.g. 'self_attn.q_proj'.
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in full_names)]
    if unknown:
        raise InvalidInput(
            f"lora.target_modules {unknown} match no layer of this model; valid: "
            f"{adaptable_module_names(model)} or ['{ALL_LINEAR}']",
            param="lora.target_modules",
        )


def apply_lora(model: PreTrainedModel, spec: LoraSpec, *, seed: int) -> PeftModel:
    """Freeze ``model`` and wrap it with fresh adapters (seeded: same seed, same adapter weights)."""
    validate_target_modules(model, spec.target_modules)
    target: list[str] | str = ALL_LINEAR if spec.target_modules == [ALL_LINEAR] else list(spec.target_modules)
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=target,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    assert isinstance(peft_model, PeftModel)
    return peft_model


def save_adapter(model: PeftModel, output_dir: str | Path) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors``."""
    output_dir = Path(output_dir)
    model.save_pretrained(str(output_dir), safe_serialization=True)
    return output_dir


def load_adapter(base: PreTrainedModel, adapter_dir: str | Path) -> PeftModel:
    """Attach a saved adapter to its base model (local folder only)."""
    return PeftModel.from_pretrained(base, str(adapter_dir), local_files_only=True)
