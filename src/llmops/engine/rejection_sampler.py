"""The acceptance rules of speculative decoding: which drafted tokens the target model keeps.

A draft model proposed ``k`` tokens ``d_1 .. d_k``; the target computed its distribution at each of
the ``k + 1`` positions (after the sequence, after ``d_1``, ..., after ``d_k``).

- Greedy (temperature 0): keep ``d_i`` while it is the target's argmax at its position; the first
  position where it is not emits the target's argmax instead; when all ``k`` are kept, the target's
  argmax after ``d_k`` comes free. The result is exactly the target's greedy output.
- Sampling: rejection sampling (Leviathan et al., 2023, "Fast Inference from Transformers via
  Speculative Decoding", algorithm 1): keep ``d_i`` with probability ``min(1, p_i(d_i) / q_i(d_i))``;
  at the first rejection draw from ``norm(max(0, p_i - q_i))`` and stop; when all are kept draw one
  more from ``p_{k+1}``. Every emitted token is distributed exactly as the target alone would
  sample it, whatever the draft.

Pure tensor functions: the engine hands in the processed distributions (temperature, top-k, top-p
applied the same way to target and draft) and a generator.
"""

from __future__ import annotations

import torch


def accept_greedy(draft_token_ids: list[int], target_logits: torch.Tensor) -> list[int]:
    """Tokens to emit: the kept drafts, then the target's own choice. ``target_logits`` ``[k+1, V]``."""
    choices = target_logits.argmax(dim=-1).tolist()  # [k + 1]
    emitted: list[int] = []
    for draft, choice in zip(draft_token_ids, choices, strict=False):
        if draft != choice:
            emitted.append(int(choice))
            return emitted
        emitted.append(draft)
    emitted.append(int(choices[len(draft_token_ids)]))
    return emitted


def accept_sampled(
    draft_token_ids: list[int],
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    generator: torch.Generator,
) -> list[int]:
    """Tokens to emit by rejection sampling. ``draft_probs`` ``[k, V]`` (the draft's distribution each
    draft was drawn from), ``target_probs`` ``[k+1, V]``; rows sum to 1."""
    k = len(draft_token_ids)
    emitted: list[int] = []
    if k:
        index = torch.tensor(draft_token_ids, dtype=torch.long, device=target_probs.device).unsqueeze(1)
        p = target_probs[:k].gather(1, index).squeeze(1)  # [k]
        q = draft_probs.gather(1, index).squeeze(1)  # [k]; > 0: each draft was drawn from it
        uniform = torch.rand(k, generator=generator, dtype=p.dtype, device=p.device)
        kept = (uniform * q < p).tolist()  # u < p/q without dividing by a tiny q
        for i, draft in enumerate(draft_token_ids):
            if not kept[i]:
                residual = (target_probs[i] - draft_probs[i]).clamp_min(0)
                total = float(residual.sum())
                # p == q exactly leaves no residual mass; then p itself is the right distribution.
                weights = residual / total if total > 0 else target_probs[i]
                emitted.append(int(torch.multinomial(weights, 1, generator=generator)))
                return emitted
            emitted.append(draft)
    emitted.append(int(torch.multinomial(target_probs[k], 1, generator=generator)))
    return emitted
