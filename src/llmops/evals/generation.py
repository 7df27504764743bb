"""Batched generation for evaluation runs, behind one small interface.

``Generator.generate`` takes prompts (text or chat messages) and returns one ``Generation`` each.
``TransformersGenerator`` runs a local model directory with left-padded batches through
transformers' ``generate``. Prompts are encoded and replies stopped by the model's
``PromptEncoder`` (its recorded input format), the one the trainer and the serving engine use, so a
model is evaluated on exactly the input it was trained on and is served with.
Batched timing is per batch: TTFT is the batch's prefill time and tokens/s the example's tokens
over the batch's wall time, which is what a batch engine delivers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmops.evals.metric_base import ChatMessage
from llmops.evals.suite import GenerationParams
from llmops.train.input_format import PromptEncoder
from llmops.train.quantization import register_with_transformers


@dataclass(frozen=True)
class Prompt:
    text: str
    messages: tuple[ChatMessage, ...] | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    output_tokens: int
    ttft_s: float
    tokens_per_s: float
    reference_token_logprobs: tuple[float, ...] | None = None


class Generator(Protocol):
    def generate(
        self, prompts: Sequence[Prompt], params: GenerationParams, *, score_reference: bool = False
    ) -> list[Generation]: ...


def encode_prompt(encoder: PromptEncoder, prompt: Prompt) -> list[int]:
    if prompt.messages is not None:
        return encoder.encode_chat(prompt.messages)
    return encoder.encode_prompt(prompt.text)


def _until_stop(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    """The generated ids before the first stop token (the stop token itself is not output)."""
    cut = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    return ids[:cut]


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cuts = [text.index(s) for s in stops if s and s in text]
    return text[: min(cuts)] if cuts else text


class TransformersGenerator:
    """Generate with a local Hugging Face model directory (safetensors, no hub access)."""

    def __init__(self, model_dir: Path, *, batch_size: int = 32, threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        register_with_transformers()  # a version quantised by llmops loads through its quantizer
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
        self.encoder = PromptEncoder.for_model_dir(model_dir, self.tokenizer)
        self.stop_ids = sorted(self.encoder.stop_token_ids(self.model.generation_config, self.model.config))
        self.batch_size = batch_size
        self.pad_id = int(
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )

    def generate(
        self, prompts: Sequence[Prompt], params: GenerationParams, *, score_reference: bool = False
    ) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            out.extend(self._batch(chunk, params, score_reference))
        return out

    def _left_pad(self, encoded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)  # [batch, width]
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
        return ids, mask

    @torch.inference_mode()
    def _batch(self, chunk: Sequence[Prompt], params: GenerationParams, score: bool) -> list[Generation]:
        encoded = [encode_prompt(self.encoder, p) for p in chunk]
        ids, mask = self._left_pad(encoded)
        started = time.perf_counter()
        self.model(input_ids=ids, attention_mask=mask)  # prefill alone, to time the first token
        ttft = time.perf_counter() - started
        if params.seed is not None:
            torch.manual_seed(params.seed)
        sampling = {"do_sample": True, "temperature": params.temperature} if params.temperature > 0 else {}
        output = self.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=params.max_tokens,
            pad_token_id=self.pad_id, eos_token_id=self.stop_ids or None, do_sample=False, **sampling,
        )  # fmt: skip
        elapsed = max(time.perf_counter() - started, 1e-9)
        results = []
        for row, prompt in enumerate(chunk):
            new = _until_stop(output[row, ids.shape[1] :].tolist(), self.stop_ids)
            new = [t for t in new if t != self.pad_id]
            text = cut_at_stop(str(self.tokenizer.decode(new, skip_special_tokens=True)), params.stop)
            logprobs = self._reference_logprobs(encoded[row], prompt.reference) if score else None
            results.append(Generation(text, len(new), ttft, len(new) / elapsed, logprobs))
        return results

    def _reference_logprobs(self, prompt_ids: list[int], reference: str | None) -> tuple[float, ...] | None:
        """Log-probabilities of the reference's tokens (and eos) given the prompt: teacher forcing."""
        if reference is None or self.tokenizer.eos_token_id is None:
            return None
        target = list(self.tokenizer(reference, add_special_tokens=False)["input_ids"])
        target.append(int(self.tokenizer.eos_token_id))
        ids = torch.tensor([prompt_ids + target])  # [1, prompt + target]
        logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]  # [target, vocab]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return tuple(float(logprobs[i, t]) for i, t in enumerate(target))
