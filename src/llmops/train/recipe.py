"""Training recipes: the typed YAML that says what to train and how.

A recipe names its inputs by reference (a base model, datasets) as plain strings; resolving those
references to local directories and JSONL files is the caller's job (the registry and the data
package live above or beside this package). Every model forbids unknown fields, so a typo in a
YAML file is an error that names the field instead of a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from llmops.errors import InvalidInput
from llmops.security.yaml_input import read_yaml_file

RecipeKind = Literal["pretrain", "finetune", "lora", "distill", "encoder"]
EncoderTask = Literal["classification", "embedding"]
ENCODER_ARCHITECTURES = ("bert",)
RowSchema = Literal["text", "prompt_completion", "chat"]


class RecipeFieldError(ValueError):
    """A cross-field rule failed; ``field`` is the dotted name of the field to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Strict(BaseModel):
    """Base of every recipe section: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NewModelSpec(_Strict):
    """A model built from scratch (``kind: pretrain``, or ``kind: encoder`` with ``architecture: bert``);
    its vocabulary size comes from the tokenizer."""

    architecture: Literal["llama", "qwen2", "bert"] = Field(
        description="Transformer family of the new model: llama and qwen2 are decoders, bert an encoder."
    )
    hidden_size: int = Field(default=64, ge=8, description="Width of the residual stream.")
    intermediate_size: int = Field(default=128, ge=8, description="Width of the MLP's hidden layer.")
    num_layers: int = Field(default=2, ge=1, description="Number of transformer blocks.")
    num_heads: int = Field(default=4, ge=1, description="Attention (query) heads per block.")
    num_kv_heads: int = Field(default=2, ge=1, description="Key/value heads (grouped-query attention).")
    max_position_embeddings: int = Field(default=512, ge=8, description="Longest context the model supports.")
    tie_embeddings: bool = Field(default=True, description="Share the input embedding and the output head.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Attention dropout probability.")

    @model_validator(mode="after")
    def _heads_divide(self) -> NewModelSpec:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}"
            )
        if self.architecture in ENCODER_ARCHITECTURES:
            # BERT has full multi-head attention and learned positions: no kv heads, no rotary rule.
            if "num_kv_heads" in self.model_fields_set and self.num_kv_heads != self.num_heads:
                raise RecipeFieldError("num_kv_heads", "bert has no grouped-query attention: remove it")
            return self
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}"
            )
        # head_dim must be even for rotary embeddings (they rotate pairs of channels).
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("hidden_size / num_heads must be even (rotary embeddings rotate channel pairs)")
        return self


class BaseModelSpec(_Strict):
    """An existing model to fine-tune (``kind: finetune`` or ``lora``)."""

    base: str = Field(description="Reference to the base model; the caller resolves it to a local directory.")


def _model_tag(value: Any) -> str:
    """Pick the model section's shape by its keys: ``base`` means an existing model."""
    if isinstance(value, BaseModelSpec) or (isinstance(value, dict) and "base" in value):
        return "base"
    return "new"


ModelSpec = Annotated[
    Annotated[NewModelSpec, Tag("new")] | Annotated[BaseModelSpec, Tag("base")],
    Discriminator(_model_tag),
]


class DataSpec(_Strict):
    """Which datasets to train and validate on, and the shape of their rows."""

    train: str = Field(description="Reference to the training dataset (a JSONL file once resolved).")
    validation: str | None = Field(
        default=None,
        description="Reference to the validation dataset; without it there is no early stopping.",
    )
    row_schema: RowSchema = Field(
        alias="schema",
        description="Row shape: text {text}, prompt_completion {prompt, completion}, chat {messages}.",
    )


class TokenizerSpec(_Strict):
    """Where the tokenizer comes from."""

    source: Literal["train", "base", "ref", "teacher"] = Field(
        default="base",
        description="train: a new byte-level BPE on the training split; base: the base model's; "
        "ref: an existing tokenizer named by `ref`; teacher: the distillation teacher's.",
    )
    vocab_size: int = Field(
        default=512, ge=300, le=1_000_000, description="Vocabulary size when training one."
    )
    min_frequency: int = Field(
        default=2, ge=1, description="Fewest occurrences for a merge when training one."
    )
    ref: str | None = Field(default=None, description="Reference to an existing tokenizer (source: ref).")

    @model_validator(mode="after")
    def _ref_matches_source(self) -> TokenizerSpec:
        if (self.source == "ref") != (self.ref is not None):
            raise RecipeFieldError("ref", "set ref exactly when source is 'ref'")
        return self


class LoraSpec(_Strict):
    """Low-rank adapter settings (``kind: lora``)."""

    r: int = Field(default=8, ge=1, description="Rank of the adapter matrices.")
    alpha: int = Field(default=16, ge=1, description="Scale of the adapter update is alpha / r.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Module names (last name component) to adapt, or ['all-linear'].",
    )


class TeacherDataSpec(_Strict):
    """Train on the teacher's own answers: it completes every prompt of the training data."""

    dataset: str | None = Field(
        default=None,
        description="Name of the dataset version the answers are stored as; default "
        "<train dataset>-teacher-answers.",
    )
    max_tokens: int = Field(default=64, ge=1, le=4096, description="Longest answer the teacher writes.")


class DistillSpec(_Strict):
    """Knowledge distillation (``kind: distill``): the student learns the teacher's softened logits."""

    teacher: str = Field(description="Reference to the teacher model version; the caller resolves it.")
    temperature: float = Field(
        default=2.0, gt=0, le=20, description="Softens both distributions; the KL term is scaled by T^2."
    )
    alpha: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Weight of the KL term; the hard-label cross-entropy gets 1 - alpha.",
    )
    teacher_data: TeacherDataSpec | None = Field(
        default=None,
        description="Replace the completions with the teacher's greedy answers (prompt_completion rows).",
    )


class EncoderSpec(_Strict):
    """What an encoder (``kind: encoder``) learns; see ``train.encoder``."""

    task: EncoderTask = Field(
        description="classification: a label per text (prompt_completion rows: the prompt is the text, the "
        "completion its label); embedding: masked-language modelling on text, served mean-pooled."
    )
    mask_probability: float = Field(
        default=0.15, gt=0, lt=1, description="Share of tokens masked per text (task: embedding)."
    )


class OptimSpec(_Strict):
    """Optimiser, schedule, batch and numeric settings."""

    lr: float = Field(default=3e-4, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(default=0.1, ge=0, description="Decoupled weight decay on matrices only.")
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW moment decay rates.")
    eps: float = Field(default=1e-8, gt=0, description="AdamW denominator epsilon.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps before the cosine decay.")
    schedule: Literal["cosine"] = Field(default="cosine", description="Learning-rate schedule after warm-up.")
    max_steps: int = Field(ge=1, description="Optimiser steps to train for.")
    batch_size: int = Field(
        default=8, ge=1, description="Sequences per micro-batch summed over all processes (global)."
    )
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches accumulated per optimiser step.")
    clip_norm: float | None = Field(default=1.0, gt=0, description="Clip the gradient norm; null disables.")
    precision: Literal["fp32", "bf16"] = Field(default="fp32", description="fp32, or bf16 autocast.")
    seed: int = Field(default=0, description="Seed of weights, data order and dropout.")
    divergence_factor: float = Field(
        default=10.0, gt=1, description="Fail when the train loss exceeds this multiple of the first step's."
    )


class Recipe(_Strict):
    """One training run: what to train, on which data, and how."""

    kind: RecipeKind = Field(
        description="pretrain a new model, finetune all weights, train a LoRA adapter, or distill a "
        "teacher into a student."
    )
    name: str | None = Field(default=None, description="Human name of the run.")
    model: ModelSpec = Field(description="A new architecture (pretrain) or a base model reference.")
    data: DataSpec = Field(description="Training and validation datasets.")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec, description="Tokenizer source.")
    lora: LoraSpec | None = Field(default=None, description="Adapter settings; required for kind lora.")
    distill: DistillSpec | None = Field(
        default=None, description="Teacher and loss settings; required for kind distill."
    )
    encoder: EncoderSpec | None = Field(
        default=None, description="Encoder task settings; required for kind encoder."
    )
    optim: OptimSpec = Field(description="Optimiser and batch settings.")
    max_seq_len: int = Field(default=256, ge=8, description="Longest training sequence in tokens.")
    packing: bool = Field(default=False, description="Pack short examples into rows of max_seq_len tokens.")
    eval_every: int | None = Field(
        default=None, ge=1, description="Validation every N steps; null: only at end."
    )
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="Stop after N evaluations without a new best validation loss."
    )
    checkpoint_every: int | None = Field(
        default=None, ge=1, description="Checkpoint every N steps; null: never."
    )
    keep_checkpoints: int = Field(default=2, ge=1, description="How many recent checkpoints to keep.")

    @model_validator(mode="before")
    @classmethod
    def _student_takes_teacher_tokenizer(cls, raw: Any) -> Any:
        # A distilled student shares its teacher's tokenizer unless the recipe names one.
        if isinstance(raw, dict) and raw.get("kind") == "distill" and "tokenizer" not in raw:
            return {**raw, "tokenizer": {"source": "teacher"}}
        return raw

    @model_validator(mode="after")
    def _sections_match_kind(self) -> Recipe:
        if (self.kind == "distill") != (self.distill is not None):
            raise RecipeFieldError(
                "distill", "the distill section is required for kind distill and not allowed otherwise"
            )
        if self.tokenizer.source == "teacher" and self.kind != "distill":
            raise RecipeFieldError("tokenizer.source", "'teacher' is only for kind distill")
        if (self.kind == "encoder") != (self.encoder is not None):
            raise RecipeFieldError(
                "encoder", "the encoder section is required for kind encoder and not allowed otherwise"
            )
        encoder_arch = (
            isinstance(self.model, NewModelSpec) and self.model.architecture in ENCODER_ARCHITECTURES
        )
        if encoder_arch and self.kind != "encoder":
            raise RecipeFieldError("model.architecture", "bert is an encoder: use kind encoder")
        if self.kind == "distill":
            self._check_distill()
        elif self.kind == "encoder":
            self._check_encoder()
        elif self.kind == "pretrain":
            if not isinstance(self.model, NewModelSpec):
                raise RecipeFieldError(
                    "model", "kind pretrain needs model.architecture and sizes, not model.base"
                )
            if self.tokenizer.source == "base":
                raise RecipeFieldError(
                    "tokenizer.source", "kind pretrain has no base model: use 'train' or 'ref'"
                )
        else:
            if not isinstance(self.model, BaseModelSpec):
                raise RecipeFieldError("model.base", f"kind {self.kind} needs a reference to the base model")
            if self.tokenizer.source != "base":
                raise RecipeFieldError(
                    "tokenizer.source", f"kind {self.kind} must use the base model's: 'base'"
                )
        if (self.kind == "lora") != (self.lora is not None):
            raise RecipeFieldError(
                "lora", "the lora section is required for kind lora and not allowed otherwise"
            )
        if self.early_stopping_patience is not None and self.data.validation is None:
            raise RecipeFieldError("early_stopping_patience", "early stopping needs data.validation")
        return self

    def _check_encoder(self) -> None:
        """An encoder from config (bert, on a trained or named tokenizer) or a registered encoder base."""
        assert self.encoder is not None
        if isinstance(self.model, NewModelSpec):
            if self.model.architecture not in ENCODER_ARCHITECTURES:
                raise RecipeFieldError(
                    "model.architecture",
                    f"kind encoder builds one of {', '.join(ENCODER_ARCHITECTURES)}, not a decoder",
                )
            if self.tokenizer.source == "base":
                raise RecipeFieldError(
                    "tokenizer.source", "an encoder from config has no base model: use 'train' or 'ref'"
                )
        elif self.tokenizer.source != "base":
            raise RecipeFieldError(
                "tokenizer.source", "an encoder tuned from a base uses its tokenizer: 'base'"
            )
        if self.packing:
            raise RecipeFieldError("packing", "an encoder sees one text per row: set packing: false")
        wanted = "prompt_completion" if self.encoder.task == "classification" else "text"
        if self.data.row_schema not in (wanted, "prompt_completion"):
            raise RecipeFieldError(
                "data.schema",
                f"task {self.encoder.task} reads {wanted} rows"
                + (" (the prompt is the text, the completion its label)" if wanted != "text" else ""),
            )

    def _check_distill(self) -> None:
        """A student from config or a smaller base, always on a tokenizer that can match the teacher's."""
        if self.tokenizer.source == "train":
            raise RecipeFieldError(
                "tokenizer.source",
                "a student must share its teacher's tokenizer: use 'teacher' (or 'base' / 'ref' "
                "naming the same one)",
            )
        if self.tokenizer.source == "base" and not isinstance(self.model, BaseModelSpec):
            raise RecipeFieldError(
                "tokenizer.source", "a student built from config has no base: use 'teacher'"
            )
        assert self.distill is not None
        if self.distill.teacher_data is not None and self.data.row_schema != "prompt_completion":
            raise RecipeFieldError(
                "distill.teacher_data", "teacher answers need prompt_completion rows (data.schema)"
            )


def parse_recipe(raw: Any, *, source: str = "recipe") -> Recipe:
    """Validate a decoded YAML/JSON object into a ``Recipe``; errors name ``source`` and the field."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{source}: a recipe must be a mapping of fields, got {type(raw).__name__}")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        field, fix = _describe(exc.errors()[0])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise InvalidInput(f"{source}: field '{field}': {fix}{more}", param=field) from None


def _describe(error: Any) -> tuple[str, str]:
    """The dotted field name and a fix for one pydantic error."""
    loc = [str(part) for part in error["loc"]]
    if len(loc) > 1 and loc[0] == "model" and loc[1] in ("new", "base"):
        del loc[1]  # the union member's tag is not a field name
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, RecipeFieldError):
        return ".".join([*loc, cause.field]), str(cause)
    if error["type"] == "extra_forbidden":
        return ".".join(loc), "unknown field; remove it or fix its spelling"
    return ".".join(loc) or "recipe", str(error["msg"]).removeprefix("Value error, ")


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file; errors name the file and the field."""
    raw = read_yaml_file(path, what="recipe", param="recipe")
    return parse_recipe(raw, source=str(path))
