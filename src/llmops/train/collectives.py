"""The process group as the training loop sees it: who am I, and the few collectives it needs.

With one process every function here is the identity, so the loop has one code path. With several
(torchrun), the group uses gloo on the CPU and NCCL on GPUs. Only rank 0 writes files and calls
the observer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_torchrun(cls, env: Mapping[str, str]) -> DistContext:
        """Read the variables torchrun sets; call this only in an entry point."""
        return cls(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
        )


def pick_device(requested: str, ctx: DistContext) -> torch.device:
    """``auto`` is the local GPU when there is one, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return torch.device(requested)


def init_group(ctx: DistContext, device: torch.device) -> None:
    """Join the process group (rendezvous from torchrun's environment); no-op for one process."""
    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)


def close_group(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over all processes, in place, and return it."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_rows(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Stack every process's same-shaped tensor: [world, *shape], row r from rank r."""
    if not ctx.enabled:
        return tensor.unsqueeze(0)
    rows = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(rows, tensor)
    return torch.stack(rows)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
