"""Evaluation throughput: batched generation against one-at-a-time, same model, same prompts.

Prints examples/s for each and the ratio (target: batched >= 4x one-at-a-time). The model is a
small Llama built from a config with a fixed seed (random weights: speed does not depend on them)
and a byte-level BPE trained on the prompts; generation is greedy with EOS disabled, so both modes
produce exactly the same tokens.

    .venv/bin/python bench/evals/run.py [--examples 64] [--max-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmops.data import synth
from llmops.evals.generation import Prompt, TransformersGenerator
from llmops.evals.suite import GenerationParams
from llmops.train.tokenizer import train_tokenizer


def build_model(folder: Path, prompts: list[str]) -> None:
    tokenizer = train_tokenizer(prompts * 4, folder, vocab_size=1024)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=256,
        eos_token_id=-1,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)


def timed(
    generator: TransformersGenerator, prompts: list[Prompt], params: GenerationParams
) -> tuple[float, list[str]]:
    started = time.perf_counter()
    texts = [g.text for g in generator.generate(prompts, params)]
    return time.perf_counter() - started, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = synth.generate("intent", args.examples, seed=1)
    prompts = [Prompt(r["prompt"]) for r in rows]
    params = GenerationParams(max_tokens=args.max_tokens, temperature=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), [r["prompt"] + " " + r["completion"] for r in rows])
        batched = TransformersGenerator(Path(tmp), batch_size=32, threads=args.threads)
        single = TransformersGenerator(Path(tmp), batch_size=1, threads=args.threads)
        batched.tokenizer.eos_token_id = None  # EOS disabled: both modes generate max_tokens each
        single.tokenizer.eos_token_id = None
        timed(single, prompts[:2], params)  # warm-up
        one_s, one_texts = timed(single, prompts, params)
        batch_s, batch_texts = timed(batched, prompts, params)
    same = sum(a == b for a, b in zip(one_texts, batch_texts, strict=True))
    print(
        f"load: {os.getloadavg()[0]:.2f}  threads: {args.threads}  examples: {args.examples}  "
        f"max_tokens: {args.max_tokens}  torch {torch.__version__}"
    )
    print("| mode | examples/s | ratio |")
    print("|---|---|---|")
    print(f"| one at a time | {args.examples / one_s:.2f} | 1.00x |")
    print(f"| batched (32) | {args.examples / batch_s:.2f} | {one_s / batch_s:.2f}x |")
    print(f"identical outputs: {same}/{args.examples}")


if __name__ == "__main__":
    main()
