"""Checkpoints: everything needed to continue a run exactly, written atomically, no pickle.

A checkpoint is a folder ``step-00000042/`` holding:

- ``model.safetensors``: the trainable parameters (all weights, or only the LoRA adapter's);
- ``optimizer.safetensors``: the optimizer's tensors flattened to ``state.{param_id}.{key}``, plus
  ``rng.torch`` ([world, n] uint8: every process's CPU generator) and ``rng.cuda`` when on a GPU;
- ``state.json``: the optimizer's non-tensor values (param groups), the scheduler, the numpy and
  Python random states, and the ``TrainerState`` (step, data position, loss history, ...).

Writes go to a hidden temporary folder beside the final one, every file and the folder are fsynced,
and one ``os.replace`` publishes it: a process killed mid-write leaves the previous checkpoint
intact, and ``latest_checkpoint`` ignores the half-written temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from llmops.train.order import DataCursor

FORMAT_VERSION = 1
MODEL_FILE, OPTIMIZER_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "state.json"
_PREFIX, _TMP_PREFIX = "step-", ".tmp-step-"


@dataclass
class TrainerState:
    """The loop's own progress: what the next step needs besides weights and optimizer."""

    step: int = 0
    cursor: DataCursor = field(default_factory=DataCursor)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last new best (early stopping)
    stopped_early: bool = False
    tokens_seen: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrainerState:
        return cls(
            step=int(raw["step"]),
            cursor=DataCursor(**raw["cursor"]),
            train_losses=[float(x) for x in raw["train_losses"]],
            val_losses=[(int(s), float(v)) for s, v in raw["val_losses"]],
            best_val_loss=raw["best_val_loss"],
            best_step=raw["best_step"],
            bad_evals=int(raw["bad_evals"]),
            stopped_early=bool(raw["stopped_early"]),
            tokens_seen=int(raw["tokens_seen"]),
        )


@dataclass
class RngSnapshot:
    """Random generator states: torch per process ([world, n] uint8), numpy and Python of rank 0."""

    torch_states: torch.Tensor
    cuda_states: torch.Tensor | None
    numpy_state: dict[str, Any]
    python_state: list[Any]


@dataclass
class Checkpoint:
    """A loaded checkpoint, ready to apply to a freshly built model, optimizer and scheduler."""

    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: RngSnapshot
    trainer: TrainerState


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into named tensors and a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``flatten_optimizer`` (tuples such as ``betas`` come back as tuples)."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = tensor
    for param_id, values in rest["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    root: Path,
    *,
    model: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    rng: RngSnapshot,
    trainer: TrainerState,
    keep: int,
) -> Path:
    """Write a checkpoint for ``trainer.step`` atomically and prune all but the ``keep`` newest."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{trainer.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{trainer.step:08d}-", dir=root))
    try:
        _write_files(tmp, model=model, optimizer=optimizer, scheduler=scheduler, rng=rng, trainer=trainer)
        _fsync_dir(tmp)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep)
    return final


def _write_files(
    folder: Path,
    *,
    model: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    rng: RngSnapshot,
    trainer: TrainerState,
) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in model.items()}, str(folder / MODEL_FILE))
    opt_tensors, opt_rest = flatten_optimizer(optimizer)
    opt_tensors["rng.torch"] = rng.torch_states.contiguous()
    if rng.cuda_states is not None:
        opt_tensors["rng.cuda"] = rng.cuda_states.contiguous()
    save_file(opt_tensors, str(folder / OPTIMIZER_FILE))
    state = {
        "format": FORMAT_VERSION,
        "optimizer": opt_rest,
        "scheduler": scheduler,
        "rng": {"numpy": rng.numpy_state, "python": rng.python_state},
        "trainer": trainer.to_json(),
    }
    (folder / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    for name in (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE):
        with open(folder / name, "rb") as handle:
            os.fsync(handle.fileno())


def _publish(tmp: Path, final: Path) -> None:
    """The commit point: one rename makes the complete checkpoint visible."""
    if final.exists():  # an older copy of this very step (a rerun): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary folders are not complete)."""
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def _prune(root: Path, keep: int) -> None:
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(f"{_TMP_PREFIX}*"):  # left behind by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder (safetensors and JSON only; nothing is unpickled)."""
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path.name} has format {state.get('format')}, expected {FORMAT_VERSION}"
        )
    opt_tensors = load_file(str(path / OPTIMIZER_FILE))
    rng = RngSnapshot(
        torch_states=opt_tensors.pop("rng.torch"),
        cuda_states=opt_tensors.pop("rng.cuda", None),
        numpy_state=state["rng"]["numpy"],
        python_state=state["rng"]["python"],
    )
    return Checkpoint(
        path=path,
        model=load_file(str(path / MODEL_FILE)),
        optimizer=unflatten_optimizer(opt_tensors, state["optimizer"]),
        scheduler=state["scheduler"],
        rng=rng,
        trainer=TrainerState.from_json(state["trainer"]),
    )
