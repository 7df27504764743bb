"""A training run on the platform: references resolved, progress tracked, the result registered.

The rest of the train package works on local files only. This module is its one connection to the
store: it resolves the recipe's dataset references to dataset versions (exported as JSONL), its
base model and tokenizer references to verified registry directories, records the run in tracking
(parameters, per-step metrics, checkpoints), and on success registers the model or adapter with
its lineage (dataset versions, base version, run, recipe digest) and its input format (the
``input_format`` tag: what the model was trained on and how prompts are encoded; the same record is a
file in the model's directory, which evaluation and serving read). A failed run registers nothing.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.data.readers import write_jsonl
from llmops.data.versions import DatasetStore, DatasetVersionInfo
from llmops.errors import InvalidInput
from llmops.registry import ModelVersionInfo, Registry
from llmops.store.home import Home
from llmops.tracking import ActiveRun, Tracker
from llmops.train import TrainingResult, TrainInputs, load_recipe, train
from llmops.train.input_format import read_input_format
from llmops.train.messages import ObserverGroup, TrainingObserver
from llmops.train.recipe import BaseModelSpec, NewModelSpec, Recipe

EXPERIMENT = "train"

# (teacher model directory, prompts, max new tokens) -> the teacher's greedy answers, in order.
TeacherAnswers = Callable[[Path, list[str], int], list[str]]


@dataclass(frozen=True)
class TrainedVersion:
    run_id: str
    result: TrainingResult
    version: ModelVersionInfo


class TrackingObserver:
    """Sends the loop's events to a tracking run."""

    def __init__(self, run: ActiveRun) -> None:
        self.run = run

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log_metrics(dict(metrics), step=step)

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log_metrics(
            {f"val_{k}" if not k.startswith("val") else k: v for k, v in metrics.items()}, step
        )

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.run.set_tags({"last_checkpoint_step": str(step)})


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value
    return out


def _export(store: DatasetStore, ref: str, folder: Path) -> DatasetVersionInfo:
    info = store.get(ref)
    write_jsonl(store.rows(info), folder / f"{info.name}-{info.version}.jsonl")
    return info


@dataclass(frozen=True)
class _Resolved:
    """A recipe's references as local files, and what the registered version links to."""

    inputs: TrainInputs
    links: list[tuple[int, str]]  # (dataset version id, role)
    base_ref: str | None
    teacher_ref: str | None
    train_info: DatasetVersionInfo


def _inputs(home: Home, recipe: Recipe, work: Path) -> _Resolved:
    """Resolve references before any training step, so a missing dataset or model fails first."""
    datasets = DatasetStore.from_home(home)
    registry = Registry.from_home(home)
    work.mkdir(parents=True, exist_ok=True)
    train_info = _export(datasets, recipe.data.train, work)
    links = [(train_info.id, "train")]
    validation_path = None
    if recipe.data.validation:
        val_info = _export(datasets, recipe.data.validation, work)
        links.append((val_info.id, "validation"))
        validation_path = work / f"{val_info.name}-{val_info.version}.jsonl"
    base_ref = None
    base_dir = None
    if isinstance(recipe.model, BaseModelSpec):
        base = registry.get(recipe.model.base)
        wanted = "hf-encoder" if recipe.kind == "encoder" else "hf-causal-lm"
        if base.format != wanted:
            what = {"peft-adapter": "an adapter", "hf-encoder": "an encoder", "hf-causal-lm": "a decoder"}
            fix = "an encoder version (kind encoder)" if recipe.kind == "encoder" else "a full decoder model"
            raise InvalidInput(
                f"{base.ref} is {what.get(base.format, base.format)}; kind {recipe.kind} tunes {fix}",
                param="model.base",
            )
        base_ref, base_dir = base.ref, registry.local_path(base.ref)
    tokenizer_dir = registry.local_path(recipe.tokenizer.ref) if recipe.tokenizer.ref else None
    teacher_ref = teacher_dir = None
    if recipe.distill is not None:
        teacher = registry.get(recipe.distill.teacher)
        if teacher.format != "hf-causal-lm":
            raise InvalidInput(
                f"{teacher.ref} is an adapter; distill from a full model", param="distill.teacher"
            )
        teacher_ref, teacher_dir = teacher.ref, registry.local_path(teacher.ref)
    inputs = TrainInputs(
        train_path=work / f"{train_info.name}-{train_info.version}.jsonl",
        validation_path=validation_path,
        base_model_dir=base_dir,
        tokenizer_dir=tokenizer_dir,
        teacher_model_dir=teacher_dir,
    )
    return _Resolved(inputs, links, base_ref, teacher_ref, train_info)


def _check_student_tokenizer(recipe: Recipe, inputs: TrainInputs) -> None:
    """Refuse a student tokenizer other than the teacher's before anything is generated or stored."""
    from llmops.train.distill import check_same_tokenizer
    from llmops.train.tokenizer import load_tokenizer

    source = {"base": inputs.base_model_dir, "ref": inputs.tokenizer_dir}.get(recipe.tokenizer.source)
    if source is not None and inputs.teacher_model_dir is not None:
        check_same_tokenizer(load_tokenizer(source), load_tokenizer(inputs.teacher_model_dir))


def _teacher_dataset(
    home: Home, recipe: Recipe, resolved: _Resolved, answer: TeacherAnswers, work: Path
) -> DatasetVersionInfo:
    """The training prompts answered by the teacher, stored as a dataset version whose parent is the
    training data and whose source is the teacher."""
    assert recipe.distill is not None and recipe.distill.teacher_data is not None
    assert resolved.inputs.teacher_model_dir is not None and resolved.teacher_ref is not None
    spec, source = recipe.distill.teacher_data, resolved.train_info
    store = DatasetStore.from_home(home)
    prompts = [str(row["prompt"]) for row in store.rows(source)]
    answers = answer(resolved.inputs.teacher_model_dir, prompts, spec.max_tokens)
    # An empty answer (the teacher stopped at once) is no completion row: it is left out and counted.
    rows = [{"prompt": p, "completion": a} for p, a in zip(prompts, answers, strict=True) if a.strip()]
    if not rows:
        raise InvalidInput(
            f"the teacher {resolved.teacher_ref} answered none of the {len(prompts)} prompts (every answer "
            "was empty); check the teacher, or train on the dataset's own completions",
            param="distill.teacher_data",
        )
    info = store.commit(
        spec.dataset or f"{source.name}-teacher-answers",
        rows,
        "prompt_completion",
        transform={"name": "teacher_answers", "teacher": resolved.teacher_ref, "max_tokens": spec.max_tokens},
        parents=[source.ref],
        source=f"model:{resolved.teacher_ref}",
        stats={"prompts": len(prompts), "empty_answers_left_out": len(prompts) - len(rows)},
    )
    write_jsonl(store.rows(info), work / f"{info.name}-{info.version}.jsonl")
    return info


def run_recipe(
    home: Home,
    recipe_path: Path,
    *,
    output_dir: Path | None = None,
    model_name: str | None = None,
    resume: bool = False,
    nproc: int = 1,
    threads: int | None = None,
    progress: TrainingObserver | None = None,
    show_progress: bool = True,
    lineage: Mapping[str, str] | None = None,
    teacher_answers: TeacherAnswers | None = None,
) -> TrainedVersion:
    """Train ``recipe_path`` and register the result; ``lineage`` (what started the run, such as a
    pipeline run) is added to the run's tags and the version's tags.

    ``teacher_answers`` generates a distillation teacher's answers (``distill.teacher_data``); the
    CLI passes the in-process engine's (``llmops.engine.offline.complete_prompts``).

    ``progress`` (such as ``llmops.train.progress.ProgressReport``) receives the loop's events
    beside tracking; ``show_progress=False`` leaves it out, for callers that must stay quiet.
    """
    recipe = load_recipe(recipe_path)
    name = model_name or recipe.name
    if not name:
        raise InvalidInput("give the model a name: set `name:` in the recipe or pass --name", param="name")
    output = output_dir or home.settings.resolved_home() / "training" / name
    if output.exists() and any(output.iterdir()) and not resume:
        raise InvalidInput(
            f"{output} already holds a training run: pass --resume to continue it, or --output for a new one",
            param="output",
        )
    # The exported rows live only as long as the run: erasing a person's data later must not
    # find copies outside the artifact store.
    with tempfile.TemporaryDirectory(prefix="llmops-train-") as work:
        resolved = _inputs(home, recipe, Path(work))
        inputs, links, base_ref = resolved.inputs, resolved.links, resolved.base_ref
        if recipe.distill is not None:
            _check_student_tokenizer(recipe, inputs)
            if recipe.distill.teacher_data is not None:
                if teacher_answers is None:
                    raise InvalidInput(
                        "distill.teacher_data needs the engine to answer the prompts: run the recipe "
                        "with `llmops train run`",
                        param="distill.teacher_data",
                    )
                answers = _teacher_dataset(home, recipe, resolved, teacher_answers, Path(work))
                inputs = inputs.model_copy(
                    update={"train_path": Path(work) / f"{answers.name}-{answers.version}.jsonl"}
                )
                links = [(answers.id, "train"), *((i, r) for i, r in links if r != "train")]
                links.append((resolved.train_info.id, "teacher_prompts"))
        recipe_digest = hashlib.sha256(Path(recipe_path).read_bytes()).hexdigest()
        params = _flatten("", json.loads(recipe.model_dump_json()), {})
        tags = {"recipe_digest": recipe_digest, "model": name, "kind": recipe.kind, **dict(lineage or {})}
        tracker = Tracker.from_home(home)
        with tracker.start_run(EXPERIMENT, name, params=params, tags=tags) as run:
            tracking = TrackingObserver(run)
            shown = progress if show_progress else None
            result = train(
                recipe,
                inputs,
                output,
                observer=ObserverGroup(tracking, shown) if shown is not None else tracking,
                resume=resume,
                nproc=nproc,
                num_threads=threads,
            )
            run.log_metrics(
                {"final_train_loss": result.final_train_loss, "tokens_per_s": result.tokens_per_s},
                step=result.final_step,
            )
    metrics = {
        "initial_train_loss": result.initial_train_loss,
        "final_train_loss": result.final_train_loss,
        "best_val_loss": result.best_val_loss,
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
    }
    version_tags: dict[str, Any] = {"recipe_digest": recipe_digest, "kind": recipe.kind}
    if recipe.distill is not None:
        version_tags["teacher"] = resolved.teacher_ref
        version_tags["distill"] = {"temperature": recipe.distill.temperature, "alpha": recipe.distill.alpha}
    if recipe.encoder is not None:
        from llmops.train.encoder import describe

        described = describe(result.model_dir)
        version_tags.update(task=described.task, architecture=described.architecture)
        if described.labels:
            version_tags["labels"] = list(described.labels)
    elif isinstance(recipe.model, NewModelSpec):
        version_tags.update(task="generation", architecture=recipe.model.architecture)
    recorded = read_input_format(result.model_dir)
    if recorded is not None:
        version_tags["input_format"] = recorded.model_dump(mode="json")
    version = Registry.from_home(home).register(
        result.model_dir,
        name,
        base=base_ref,
        source_run_id=run.id,
        datasets=links,
        metrics={k: v for k, v in metrics.items() if v is not None},
        tags={**version_tags, **dict(lineage or {})},
        description=_description(recipe, Path(recipe_path).name, resolved.teacher_ref),
        reason=f"training run {run.id}",
    )
    return TrainedVersion(run.id, result, version)


def _description(recipe: Recipe, recipe_name: str, teacher_ref: str | None) -> str:
    if teacher_ref is not None:
        return f"distilled from {teacher_ref} by recipe {recipe_name}"
    if recipe.encoder is not None:
        return f"encoder ({recipe.encoder.task}) from recipe {recipe_name}"
    return f"{recipe.kind} from recipe {recipe_name}"
