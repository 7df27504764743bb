"""Multi-LoRA: two adapters (and the base) in one batch equal each adapter's merged model alone.

Our path adds ``B(A(x)) * scale`` to the base layer's output per row; the merged model folds
``scale * B @ A`` into the weight. Same math, different rounding: greedy tokens must be equal and
chosen-token logprobs agree within 1e-4 (stated tolerance).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.engine.engine_factories import collect, collect_all, greedy, random_prompts, reference_greedy

from llmops.engine.types import GenerationRequest
from llmops.errors import Conflict, InvalidInput, NotFound

LORA_TOLERANCE = 1e-4


def make_adapter(base_dir: Path, out_dir: Path, seed: int, targets: list[str]) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    torch.manual_seed(seed)
    # init_lora_weights=False: random A and B, so the adapter really changes the outputs.
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out_dir)
    return out_dir


def merged_model(base_dir: Path, adapter_dir: Path) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().eval()


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "alpha": make_adapter(tiny_model_dir, root / "alpha", 1, ["q_proj", "v_proj"]),
        "beta": make_adapter(tiny_model_dir, root / "beta", 2, ["q_proj", "k_proj", "o_proj", "down_proj"]),
    }


@pytest.mark.slow
def test_two_adapters_in_one_batch_equal_their_merged_models(
    make_backend: Any, tiny_model_dir: Path, adapter_dirs: dict[str, Path], reference_model: Any
) -> None:
    backend = make_backend(adapters=adapter_dirs, max_num_batched_tokens=64)
    assert backend.info().adapters == ("alpha", "beta")
    prompts = random_prompts(9, 5, 30, seed=11)
    names = [None, "alpha", "beta"] * 3
    requests = [
        GenerationRequest(f"r{i}", greedy(10, logprobs=True), prompt_token_ids=tuple(p), adapter=name)
        for i, (p, name) in enumerate(zip(prompts, names, strict=True))
    ]
    results = asyncio.run(collect_all(backend, requests))
    references = {None: reference_model}
    references.update({name: merged_model(tiny_model_dir, path) for name, path in adapter_dirs.items()})
    differs_from_base = 0
    for prompt, name, events in zip(prompts, names, results, strict=True):
        expected, logits = reference_greedy(references[name], prompt, 10)
        assert [e.token_id for e in events] == expected, name
        chosen = torch.log_softmax(logits, dim=-1)[torch.arange(10), torch.tensor(expected)]
        assert torch.allclose(torch.tensor([e.logprob for e in events]), chosen, atol=LORA_TOLERANCE)
        if name is not None:
            differs_from_base += expected != reference_greedy(reference_model, prompt, 10)[0]
    assert differs_from_base >= 4  # the adapters really change the outputs


def test_adapters_load_and_unload_at_run_time(make_backend: Any, adapter_dirs: dict[str, Path]) -> None:
    backend = make_backend()
    prompt = tuple(random_prompts(1, 12, 12, seed=12)[0])
    base = asyncio.run(collect(backend, GenerationRequest("b", greedy(8), prompt_token_ids=prompt)))
    asyncio.run(backend.load_adapter("alpha", adapter_dirs["alpha"]))
    assert backend.info().adapters == ("alpha",)
    tuned = asyncio.run(
        collect(backend, GenerationRequest("t", greedy(8), prompt_token_ids=prompt, adapter="alpha"))
    )
    assert [e.token_id for e in tuned] != [e.token_id for e in base]
    with pytest.raises(Conflict):
        asyncio.run(backend.load_adapter("alpha", adapter_dirs["alpha"]))

    async def unload_while_in_use() -> None:
        stream = backend.generate(
            GenerationRequest("busy", greedy(300), prompt_token_ids=prompt, adapter="alpha")
        )
        await stream.__anext__()
        with pytest.raises(Conflict):
            await backend.unload_adapter("alpha")
        await stream.aclose()
        await backend.abort("busy")

    asyncio.run(unload_while_in_use())
    asyncio.run(backend.unload_adapter("alpha"))
    assert backend.info().adapters == ()
    again = asyncio.run(collect(backend, GenerationRequest("b2", greedy(8), prompt_token_ids=prompt)))
    assert [e.token_id for e in again] == [e.token_id for e in base]
    with pytest.raises(InvalidInput):
        asyncio.run(
            collect(backend, GenerationRequest("t2", greedy(8), prompt_token_ids=prompt, adapter="alpha"))
        )
    with pytest.raises(NotFound):
        asyncio.run(backend.unload_adapter("alpha"))


def test_prefix_cache_is_not_shared_across_adapters(make_backend: Any, adapter_dirs: dict[str, Path]) -> None:
    backend = make_backend(adapters=adapter_dirs, block_size=8)
    prompt = tuple(random_prompts(1, 33, 33, seed=13)[0])
    first = asyncio.run(
        collect(backend, GenerationRequest("a1", greedy(2), prompt_token_ids=prompt, adapter="alpha"))
    )
    other = asyncio.run(
        collect(backend, GenerationRequest("b1", greedy(2), prompt_token_ids=prompt, adapter="beta"))
    )
    same = asyncio.run(
        collect(backend, GenerationRequest("a2", greedy(2), prompt_token_ids=prompt, adapter="alpha"))
    )
    assert first[-1].cached_prompt_tokens == 0 and other[-1].cached_prompt_tokens == 0
    assert same[-1].cached_prompt_tokens == 32
