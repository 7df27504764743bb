"""What every stage kind provides, and what the runner hands it.

A stage kind is a class with typed parameters (a strict pydantic model), the names of its outputs,
and four verbs: ``available`` (can this installation run it at all; checked before anything runs),
``fingerprint`` (the digests of what it reads, so the cache key changes when an input does),
``run`` (do the work, return the outputs) and ``still_valid`` (do cached outputs still exist in the
store). Outputs are strings: dataset and model references (``name@version``), run ids, or files
restored from the artifact store.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

import llmops
from llmops.store.home import Home


class StageParams(BaseModel):
    """Base of every stage's parameters: unknown fields are refused, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StageContext:
    """What the runner hands a stage: the home, where the pipeline file lives, and the runs."""

    home: Home
    pipeline: str
    stage: str
    base_dir: Path
    pipeline_run_id: str = ""
    stage_run_id: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = print
    reports_dir: Path = Path("reports")  # `pipeline run --reports`: where summaries for CI go

    def path(self, value: str) -> Path:
        """A path from the pipeline file, relative to the file's folder."""
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    @property
    def lineage(self) -> dict[str, str]:
        """What each output version records about the pipeline run that made it."""
        return {
            "pipeline": self.pipeline,
            "pipeline_run": self.pipeline_run_id,
            "stage": self.stage,
            "stage_run": self.stage_run_id,
        }


@dataclass(frozen=True)
class StageOutcome:
    """A finished stage: its outputs, files to keep with the cache record, and whether it passed.

    ``passed`` is False for a stage that ran correctly and said no (a gate that failed, a rollout
    that rolled back): its outputs are recorded on its run, the stage is not cached and its
    dependants are blocked. ``files`` maps an output name to a file the runner stores
    as an artifact of the stage run and restores when the stage is later skipped.
    """

    outputs: dict[str, str]
    passed: bool = True
    message: str | None = None
    files: dict[str, Path] = field(default_factory=dict)


class StageKind:
    """One kind of stage. Subclasses set the class attributes and implement ``run``."""

    kind: ClassVar[str]
    params: ClassVar[type[StageParams]]
    outputs: ClassVar[tuple[str, ...]] = ()
    promotes: ClassVar[bool] = False  # moves what serves users: must sit behind a gate
    said_no: ClassVar[str] = "failed"  # the stage's status when ``run`` returns passed=False
    summary: ClassVar[str] = ""

    def output_names(self, params: StageParams) -> tuple[str, ...]:
        return self.outputs

    def available(self) -> str | None:
        """None when this installation can run the kind, else why not (checked before running)."""
        return None

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        """Digests of everything the stage reads besides its parameters."""
        return {}

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        raise NotImplementedError

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        """None when cached outputs are still usable, else why not."""
        return None

    def code_version(self) -> str:
        """The version of the code that runs this kind: the package version and this module's source."""
        source = inspect.getsource(inspect.getmodule(type(self)))  # type: ignore[arg-type]
        return f"{llmops.__version__}+{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's sorted (relative path, file digest) list."""
    if path.is_dir():
        entries = sorted(p for p in path.rglob("*") if p.is_file())
        listing = "\n".join(f"{p.relative_to(path).as_posix()} {file_digest(p)}" for p in entries)
        return hashlib.sha256(listing.encode()).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def param_fields(params: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(name, type, description) of each parameter, for `pipeline kinds` and the docs."""
    rows = []
    for name, info in params.model_fields.items():
        annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
        rows.append((name, annotation.replace("typing.", ""), info.description or ""))
    return rows


def dump(params: Any) -> dict[str, Any]:
    return params.model_dump(mode="json") if isinstance(params, BaseModel) else dict(params)
