"""``TransformersBackend``: the in-process engine behind the ``Backend`` contract.

Loads a local model directory (config, safetensors weights, tokenizer; never a hub download),
validates and admits requests on the caller's event loop, and streams their tokens from the engine
thread. Owns the tokenizer: incremental text and stop strings. Prompts, conversations and the stop
tokens come from each model's ``PromptEncoder`` (the base's, or an adapter's when its directory
records its own input format), the same one training and evaluation use.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch

from llmops.engine.config import EngineConfig
from llmops.engine.device import Placement, place_module
from llmops.engine.engine_loop import EngineLoop, RequestStream
from llmops.engine.llm_engine import LLMEngine
from llmops.engine.output_processor import OutputProcessor
from llmops.engine.paged_attention import register_paged_attention
from llmops.engine.sequence import Sequence
from llmops.engine.types import (
    Backend,
    EngineStats,
    GenerationRequest,
    HealthStatus,
    ModelInfo,
    TokenEvent,
)
from llmops.engine.validation import RequestLimits, prompt_token_ids, validate_request
from llmops.errors import Conflict, InvalidInput
from llmops.train.input_format import PromptEncoder, read_input_format


def load_causal_lm(model_dir: Path, placement: Placement) -> Any:
    """A transformers causal LM from a local directory on ``placement``'s device and dtype, its
    attention routed to the paged cache.

    A directory quantised by llmops (``quantization_config.quant_method: llmops``) loads through the
    quantizer ``train.quantization`` registers with transformers; its kernels are the CPU's, so it
    runs on the CPU in float32 only."""
    from transformers import AutoModelForCausalLM

    from llmops.train.quantization import register_with_transformers

    _check_quantized_placement(model_dir, placement)
    register_with_transformers()
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        local_files_only=True,
        dtype=placement.dtype,
        attn_implementation=register_paged_attention(),
    )
    return place_module(model, placement).eval()


def _check_quantized_placement(model_dir: Path, placement: Placement) -> None:
    from llmops.train.quantization import quantization_of

    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    quantized = quantization_of(config)
    if quantized is None:
        return
    if placement.device.type != "cpu":
        raise InvalidInput(
            f"a model quantised with {quantized.get('method', 'llmops')!r} runs on the CPU only "
            f"(its kernels are CPU kernels), not on {placement.device}; set device to cpu",
            param="device",
        )
    if placement.dtype != torch.float32:
        raise InvalidInput(
            f"a quantised model computes in float32, not {placement.dtype}; set dtype to float32 or auto",
            param="dtype",
        )


def stop_token_ids(model: Any, encoder: PromptEncoder) -> frozenset[int]:
    """Ids that end a reply: the input format's stop tokens and the eos ids of the model's configs."""
    return encoder.stop_token_ids(getattr(model, "generation_config", None), model.config)


class TransformersBackend(Backend):
    """Continuous batching over a paged KV cache for a local transformers model (CPU or GPU)."""

    def __init__(
        self,
        model_dir: Path,
        config: EngineConfig | None = None,
        adapters: dict[str, Path] | None = None,
        *,
        model_id: str | None = None,
        draft_dir: Path | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        self.config = config or EngineConfig()
        self.model_id = model_id or self.model_dir.name
        # Refuse a device this machine lacks before reading any weights.
        self.placement = self.config.placement()
        # Deliberately process-wide: torch has one intra-op pool, and the engine thread uses it.
        torch.set_num_threads(self.config.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.encoder = PromptEncoder.for_model_dir(self.model_dir, self.tokenizer)
        self._adapter_encoders: dict[str, PromptEncoder] = {}
        model = load_causal_lm(self.model_dir, self.placement)
        draft = self._load_draft(draft_dir)
        self.engine = LLMEngine(model, self.config, stop_token_ids(model, self.encoder), draft_model=draft)
        for name, path in (adapters or {}).items():
            self.engine.adapters.load(name, Path(path))
            self._adapter_encoders[name] = self._encoder_of(Path(path))
        self._loop = EngineLoop(self.engine, name=f"llmops-engine-{self.model_id}")
        self._in_flight: set[str] = set()

    def _load_draft(self, draft_dir: Path | None) -> Any:
        """The draft model of ``config.speculative``: ``draft_dir`` (the resolved reference) or, when
        not given, ``speculative.draft`` read as a local directory. Its tokenizer must be ours."""
        spec = self.config.speculative
        if spec is None:
            return None
        from transformers import AutoTokenizer

        directory = Path(draft_dir) if draft_dir is not None else Path(spec.draft).expanduser()
        if not (directory / "config.json").is_file():
            raise InvalidInput(
                f"speculative.draft: {spec.draft!r} is not a model directory; give a local directory or a "
                "registry reference served through `llmops replica`",
                param="speculative.draft",
            )
        draft_tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        if draft_tokenizer.get_vocab() != self.tokenizer.get_vocab():
            raise InvalidInput(
                f"speculative.draft: {spec.draft!r} has a different vocabulary from the served model "
                f"({len(draft_tokenizer)} vs {len(self.tokenizer)} tokens); a draft must share its tokenizer",
                param="speculative.draft",
            )
        return load_causal_lm(directory, self.placement)

    def info(self) -> ModelInfo:
        return ModelInfo(self.model_id, self.engine.max_model_len, self.engine.adapters.names)

    def limits(self) -> RequestLimits:
        return RequestLimits(
            max_model_len=self.engine.max_model_len,
            vocab_size=self.engine.vocab_size,
            max_top_logprobs=self.config.max_top_logprobs,
            adapters=self.engine.adapters.names,
        )

    def encoder_for(self, adapter: str | None) -> PromptEncoder:
        """How prompts for ``adapter`` (None: the base model) are encoded."""
        return self._adapter_encoders.get(adapter, self.encoder) if adapter else self.encoder

    def _encoder_of(self, adapter_dir: Path) -> PromptEncoder:
        """An adapter tuned on another format than its base's records it; otherwise the base's holds."""
        recorded = read_input_format(adapter_dir)
        return self.encoder if recorded is None else PromptEncoder(self.tokenizer, recorded)

    async def start(self) -> None:
        self._loop.start()

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._loop.stop)

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        prompt_ids, source = prompt_token_ids(request, self.encoder_for(request.adapter))
        validate_request(request, prompt_ids, source, self.limits())
        if request.request_id in self._in_flight:
            raise Conflict(f"request id {request.request_id!r} is already in flight", param="request_id")
        self.engine.admission.admit(len(prompt_ids))
        self._loop.start()
        stream = RequestStream(
            asyncio.get_running_loop(),
            asyncio.Queue(),
            OutputProcessor(request.request_id, self.tokenizer, prompt_ids, request.sampling),
        )
        seq = Sequence(
            request.request_id,
            prompt_ids,
            request.sampling,
            adapter=request.adapter,
            deadline=request.deadline,
        )
        self._in_flight.add(request.request_id)
        self._loop.submit(seq, stream)
        finished = False
        try:
            while not finished:
                event = await stream.queue.get()
                finished = event.finish_reason is not None
                yield event
        finally:
            self._in_flight.discard(request.request_id)
            if not finished:
                # The consumer went away (disconnect, cancellation): free the blocks at the next step.
                self._loop.abort(request.request_id)

    async def abort(self, request_id: str) -> None:
        if self._loop.alive:
            await asyncio.wrap_future(self._loop.abort(request_id))

    async def health(self) -> HealthStatus:
        if self._loop.shut_down:
            return HealthStatus(False, "the engine was shut down")
        if self._loop.alive or not self._loop.started:
            return HealthStatus(True, self._loop.last_step_error or "")
        return HealthStatus(False, "the engine thread stopped")

    def stats(self) -> EngineStats:
        return self._loop.stats() if self._loop.alive else self.engine.stats()

    def count_tokens(self, text: str) -> int | None:
        return len(self.encoder.encode_prompt(text))

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Mean-pooled last hidden state (after the final norm) of each text, base model only."""
        batches = []
        for index, text in enumerate(texts):
            ids = self.encoder.encode_prompt(text)
            if not text or not ids:
                raise InvalidInput(f"input {index} is empty", param="input")
            if len(ids) > self.engine.max_model_len:
                raise InvalidInput(
                    f"input {index} has {len(ids)} tokens; the limit is {self.engine.max_model_len}",
                    param="input",
                )
            batches.append(ids)
        return await self._on_engine_thread(lambda: [self._embed_one(ids) for ids in batches])

    @torch.inference_mode()
    def _embed_one(self, ids: list[int]) -> list[float]:
        adapters = self.engine.adapters
        with adapters.activate(None):
            # No paged batch: the attention falls back to plain causal SDPA. [1, L, hidden]
            input_ids = torch.tensor([ids], device=self.placement.device)
            hidden = adapters.base_model.get_decoder()(input_ids=input_ids, use_cache=False)
        return [float(x) for x in hidden.last_hidden_state[0].float().mean(dim=0)]

    async def load_adapter(self, name: str, path: Path) -> None:
        """Load a peft LoRA adapter; requests may use it as soon as this returns."""
        await self._on_engine_thread(lambda: self.engine.load_adapter(name, Path(path)))
        self._adapter_encoders[name] = self._encoder_of(Path(path))

    async def unload_adapter(self, name: str) -> None:
        """Unload an adapter; refused with Conflict while requests use it."""
        await self._on_engine_thread(lambda: self.engine.unload_adapter(name))
        self._adapter_encoders.pop(name, None)

    async def _on_engine_thread(self, fn: Any) -> Any:
        self._loop.start()
        return await asyncio.wrap_future(self._loop.call(fn))
