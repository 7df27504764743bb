"""Random state: seed a process, and capture/restore every generator for an exact resume.

Training itself draws randomness only from torch (dropout, LoRA init is seeded separately); numpy and
Python ``random`` are captured too so code added later (augmentation, sampling) resumes exactly.
Each process seeds torch with ``seed + rank`` so dropout masks differ between processes.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from llmops.train.checkpoint import RngSnapshot
from llmops.train.collectives import DistContext, all_gather_rows


def seed_process(seed: int, ctx: DistContext) -> None:
    """Seed torch (per rank), numpy and Python random."""
    torch.manual_seed(seed + ctx.rank)
    np.random.seed(seed)
    random.seed(seed)


def capture_rng(ctx: DistContext, device: torch.device) -> RngSnapshot:
    """Every process's torch generator (a collective: all ranks must call it) plus rank 0's others."""
    torch_states = all_gather_rows(torch.get_rng_state(), ctx)  # [world, n] uint8
    cuda_states = None
    if device.type == "cuda":
        local = torch.cuda.get_rng_state(device).to(device)
        cuda_states = all_gather_rows(local, ctx).cpu()  # NCCL gathers on the GPU
    numpy_state: dict[str, Any] = np.random.get_state(legacy=False)
    numpy_json = {
        **numpy_state,
        "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()},
    }
    version, internal, gauss = random.getstate()
    return RngSnapshot(
        torch_states=torch_states,
        cuda_states=cuda_states,
        numpy_state=numpy_json,
        python_state=[version, list(internal), gauss],
    )


def restore_rng(snapshot: RngSnapshot, ctx: DistContext, device: torch.device) -> None:
    """Put generators back as captured; a process count that changed reuses rank 0's row reseeded."""
    rows = snapshot.torch_states.shape[0]
    if ctx.rank < rows:
        torch.set_rng_state(snapshot.torch_states[ctx.rank].clone())
    else:  # more processes than when saved: exactness is lost only for dropout on the new ranks
        torch.manual_seed(int(snapshot.torch_states[0, :8].sum()) + ctx.rank)
    if (
        device.type == "cuda"
        and snapshot.cuda_states is not None
        and ctx.rank < snapshot.cuda_states.shape[0]
    ):
        torch.cuda.set_rng_state(snapshot.cuda_states[ctx.rank].clone(), device)
    numpy_state = dict(snapshot.numpy_state)
    numpy_state["state"] = {
        **numpy_state["state"],
        "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
    }
    np.random.set_state(numpy_state)
    version, internal, gauss = snapshot.python_state
    random.setstate((version, tuple(internal), gauss))
