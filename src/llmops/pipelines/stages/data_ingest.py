"""`data.ingest`: read a JSONL, CSV or Parquet file into a new dataset version."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from llmops.data import operations
from llmops.errors import InvalidInput
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams, file_digest
from llmops.pipelines.stages.data_common import datasets, datasets_exist


class IngestParams(StageParams):
    file: str = Field(description="File to read, relative to the pipeline file (JSONL, CSV or Parquet).")
    name: str = Field(description="Dataset name of the new version.")
    schema_kind: str | None = Field(
        None, description="Row schema (`text`, `prompt_completion`, `chat`); default: detected."
    )
    skip_invalid: bool = Field(False, description="Skip rows that do not fit the schema instead of failing.")


class DataIngest(StageKind):
    kind = "data.ingest"
    params = IngestParams
    outputs = ("dataset",)
    summary = "Read a file into a dataset version."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, IngestParams)
        path = ctx.path(params.file)
        if not path.is_file():
            raise InvalidInput(f"stage {ctx.stage!r}: params.file: no file {path}", param="file")
        return {"file": file_digest(path)}

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, IngestParams)
        info, skipped = operations.ingest(
            datasets(ctx),
            ctx.path(params.file),
            params.name,
            kind=params.schema_kind,
            skip_invalid=params.skip_invalid,
            context=ctx.lineage,
        )
        return StageOutcome(
            {"dataset": info.ref}, message=f"{info.ref}: {info.num_rows} rows, {skipped} skipped"
        )

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        return datasets_exist(ctx, outputs)


STAGE = DataIngest()
