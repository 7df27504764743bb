"""Deterministic data order with an explicit position, so resume continues on the exact next example.

Epoch ``e`` visits the examples in a permutation drawn from ``numpy.random.default_rng([seed, e])``:
a pure function of the seed and the epoch, touching no global random state. A ``DataCursor``
(epoch, index) is the position of the next example; saving it in a checkpoint is all resume needs.

Batches are global: every process computes the same global micro-batch of indices and takes its own
contiguous shard (rank r of w takes ``[r*k, (r+1)*k)`` with ``k = batch/w``), the equivalent of a
``DistributedSampler`` over each global batch. The result does not depend on the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmops.errors import InvalidInput


@dataclass(frozen=True)
class DataCursor:
    """Position of the next example: ``index`` into epoch ``epoch``'s permutation."""

    epoch: int = 0
    index: int = 0


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The visiting order of one epoch: a permutation of ``range(num_examples)``."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def take(cursor: DataCursor, count: int, num_examples: int, seed: int) -> tuple[list[int], DataCursor]:
    """The next ``count`` example indices and the cursor after them; epochs roll over seamlessly."""
    indices: list[int] = []
    epoch, index = cursor.epoch, cursor.index
    order = epoch_order(num_examples, seed, epoch)
    while len(indices) < count:
        if index == num_examples:
            epoch, index = epoch + 1, 0
            order = epoch_order(num_examples, seed, epoch)
        step = min(count - len(indices), num_examples - index)
        indices.extend(int(i) for i in order[index : index + step])
        index += step
    return indices, DataCursor(epoch=epoch, index=index)


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """This process's contiguous share of a global micro-batch."""
    if len(indices) % world_size:
        raise InvalidInput(
            f"optim.batch_size {len(indices)} must be a multiple of the number of processes {world_size}",
            param="optim.batch_size",
        )
    per_rank = len(indices) // world_size
    return indices[rank * per_rank : (rank + 1) * per_rank]
