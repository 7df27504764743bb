"""The training benchmark's workload: sizes, full rows of synthetic text, the tokenizer, the base model.

Every row is exactly ``seq_len`` tokens (bos + ``seq_len - 2`` text tokens + eos), so every batch has
the same shape and the same number of tokens, and the bare loop and the platform see the same ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from llmops.data.synth import generate
from llmops.train import Recipe, parse_recipe
from llmops.train.tokenizer import train_tokenizer

SEED = 0


@dataclass(frozen=True)
class Sizes:
    """Model, batch and run lengths of one benchmark mode."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int
    seq_len: int
    batch: int
    warmup_steps: int  # skipped by both loops before the clock starts
    measured_steps: int  # platform vs bare window
    checkpoint_every: int
    tune_steps: int  # LoRA vs full window
    profile_steps: int  # after the window: torch profiler memory events
    repeats: int
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_r: int = 8

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Sizes:
        return cls(**{**raw, "lora_targets": tuple(raw["lora_targets"])})

    def describe(self) -> str:
        return (
            f"Llama hidden {self.hidden}, intermediate {self.intermediate}, {self.layers} layers, "
            f"{self.heads} heads, vocab {self.vocab}, fp32; batch {self.batch} x {self.seq_len} tokens"
        )


# A batch of 16 took ~720 ms per step here (1 thread, shared cores); 8 keeps the default run in minutes.
FULL = Sizes(
    hidden=256,
    intermediate=1024,
    layers=4,
    heads=8,
    vocab=2048,
    seq_len=128,
    batch=8,
    warmup_steps=3,
    measured_steps=50,
    checkpoint_every=50,
    tune_steps=15,
    profile_steps=2,
    repeats=3,
)
QUICK = Sizes(
    hidden=64,
    intermediate=256,
    layers=2,
    heads=4,
    vocab=512,
    seq_len=64,
    batch=4,
    warmup_steps=2,
    measured_steps=10,
    checkpoint_every=5,
    tune_steps=5,
    profile_steps=1,
    repeats=1,
)


@dataclass(frozen=True)
class Workload:
    """Files every worker process reads: the rows (JSONL, schema text) and the base model folder."""

    rows_path: Path
    base_dir: Path
    num_rows: int
    total_params: int

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Workload:
        return cls(Path(raw["rows_path"]), Path(raw["base_dir"]), raw["num_rows"], raw["total_params"])


def _full_rows(tokenizer: PreTrainedTokenizerBase, texts: list[str], length: int, count: int) -> list[str]:
    """Cut the token stream of ``texts`` into windows of ``length`` tokens, kept only if they round-trip."""
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    rows: list[str] = []
    for start in range(0, len(stream) - length + 1, length):
        window = str(tokenizer.decode(stream[start : start + length]))
        if window.strip() and len(tokenizer(window, add_special_tokens=False)["input_ids"]) == length:
            rows.append(window)
        if len(rows) == count:
            break
    return rows


def prepare(root: Path, sizes: Sizes) -> Workload:
    """Write the rows and a randomly initialised base model (with its tokenizer) under ``root``."""
    count = sizes.batch * (sizes.warmup_steps + sizes.measured_steps + sizes.profile_steps)
    # Each intent row is ~25 tokens; ask for plenty so enough windows survive the round-trip check.
    intent = generate("intent", count * sizes.seq_len // 12 + 200, seed=SEED)
    texts = [f"{row['prompt']}\n{row['completion']}\n" for row in intent]
    base_dir = root / "base"
    tokenizer = train_tokenizer(
        texts, base_dir, vocab_size=sizes.vocab, min_frequency=2, model_max_length=sizes.seq_len
    )
    rows = _full_rows(tokenizer, texts, sizes.seq_len - 2, count)
    if len(rows) < count:
        raise RuntimeError(f"only {len(rows)} full rows of {count}; generate more intent rows")
    rows_path = root / "rows.jsonl"
    rows_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows), encoding="utf-8")
    config = LlamaConfig(
        vocab_size=max(sizes.vocab, len(tokenizer)),
        hidden_size=sizes.hidden,
        intermediate_size=sizes.intermediate,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.heads,
        max_position_embeddings=2 * sizes.seq_len,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config).float()
    hf_logging.disable_progress_bar()  # save_pretrained's shard bar
    model.save_pretrained(str(base_dir))
    total = sum(p.numel() for p in model.parameters())
    return Workload(rows_path, base_dir, len(rows), total)


def recipe(kind: str, sizes: Sizes, *, steps: int, checkpoint_every: int | None) -> Recipe:
    """A finetune or lora recipe on the base model; no validation, so every step does the same work."""
    raw: dict[str, Any] = {
        "kind": kind,
        "name": f"bench-{kind}",
        "model": {"base": "bench-base"},
        "data": {"train": "bench-rows", "schema": "text"},
        "optim": {
            "lr": 3.0e-4,
            "weight_decay": 0.1,
            "betas": [0.9, 0.95],
            "warmup_steps": 0,
            "max_steps": steps,
            "batch_size": sizes.batch,
            "clip_norm": 1.0,
            "precision": "fp32",
            "seed": SEED,
        },
        "max_seq_len": sizes.seq_len,
        "packing": True,
        "checkpoint_every": checkpoint_every,
        "keep_checkpoints": 2,
    }
    if kind == "lora":
        targets = list(sizes.lora_targets)
        raw["lora"] = {"r": sizes.lora_r, "alpha": 2 * sizes.lora_r, "target_modules": targets}
    return parse_recipe(raw, source="bench")
