"""`command`: a user's own step, run as a process; its declared input files are part of the cache key
and its declared output files are kept in the artifact store with the stage run."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping

from pydantic import Field

from llmops.errors import InvalidInput
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams, file_digest


class CommandParams(StageParams):
    run: list[str] | str = Field(
        description="The command: an argument list, or one string split like a shell."
    )
    inputs: list[str] = Field(
        default_factory=list, description="Files or folders it reads (their digests are in the cache key)."
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Output name → file it writes (kept with the stage run)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    timeout_s: float | None = Field(None, gt=0, description="Fail the stage after this many seconds.")

    def argv(self) -> list[str]:
        return shlex.split(self.run) if isinstance(self.run, str) else list(self.run)


class Command(StageKind):
    kind = "command"
    params = CommandParams
    summary = "Run your own command; declared inputs are digested, declared outputs kept."

    def output_names(self, params: StageParams) -> tuple[str, ...]:
        assert isinstance(params, CommandParams)
        return tuple(params.outputs)

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, CommandParams)
        digests = {}
        for item in params.inputs:
            path = ctx.path(item)
            if not path.exists():
                raise InvalidInput(f"stage {ctx.stage!r}: params.inputs: no file {path}", param="inputs")
            digests[item] = file_digest(path)
        return digests

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, CommandParams)
        argv = params.argv()
        if not argv:
            raise InvalidInput(f"stage {ctx.stage!r}: params.run: the command is empty", param="run")
        env = {**os.environ, **ctx.env, **params.env, "LLMOPS_PIPELINE_RUN": ctx.pipeline_run_id}
        try:
            done = subprocess.run(argv, cwd=ctx.base_dir, env=env, timeout=params.timeout_s, check=False)
        except FileNotFoundError:
            raise InvalidInput(
                f"stage {ctx.stage!r}: params.run: no program {argv[0]!r}", param="run"
            ) from None
        if done.returncode != 0:
            raise InvalidInput(f"stage {ctx.stage!r}: `{shlex.join(argv)}` exited with {done.returncode}")
        files = {name: ctx.path(path) for name, path in params.outputs.items()}
        missing = [f"{name} ({path})" for name, path in files.items() if not path.is_file()]
        if missing:
            raise InvalidInput(f"stage {ctx.stage!r}: the command did not write {', '.join(missing)}")
        outputs = {name: str(path) for name, path in files.items()}
        return StageOutcome(outputs, message=f"`{shlex.join(argv)}` exited 0", files=files)

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        return None  # files are restored from the artifact store by the runner


STAGE = Command()
