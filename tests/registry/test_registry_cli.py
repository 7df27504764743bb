"""The registry through the real CLI: register, alias, show, lineage and card print real data."""

from __future__ import annotations

import json
from pathlib import Path

from llmops.data.versions import DatasetStore
from llmops.registry import Registry
from llmops.store.home import open_home
from llmops.tracking import Tracker


def test_register_alias_show_lineage_card(cli, tiny_model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = open_home()
    raw = DatasetStore.from_home(home).commit(
        "support",
        [{"text": "hello"}, {"text": "world"}],
        "text",
        transform={"name": "ingest"},
        source="support.jsonl",
    )
    clean = DatasetStore.from_home(home).commit(
        "support-clean", [{"text": "hello"}], "text", transform={"name": "dedup_exact"}, parents=[raw.ref]
    )
    with Tracker.from_home(home).start_run("pretrain", "tiny-run", params={"lr": 0.001}) as run:
        run.log_metric("loss", 1.25, step=10)
    base = Registry.from_home(home).register(
        tiny_model_dir,
        "tiny",
        source_run_id=run.id,
        datasets=[(clean.id, "train")],
        description="A tiny Llama.",
    )

    registered = cli("models", "register", tiny_model_dir, "--name", "m", "--reason", "first import")
    assert registered.code == 0 and "registered m@1" in registered.out
    assert (
        cli("models", "alias", "set", "tiny", "production", str(base.version), "--reason", "launch").code == 0
    )

    shown = cli("models", "show", "tiny@production", "--json")
    body = json.loads(shown.out)
    assert shown.code == 0
    assert body["digest"] == base.digest and body["aliases"] == ["production"]
    assert body["datasets"][0]["dataset"] == "support-clean" and body["source_run_id"] == run.id

    lineage = cli("models", "lineage", "tiny@production")
    assert lineage.code == 0
    assert run.id in lineage.out and "support-clean@1" in lineage.out and "support@1" in lineage.out

    card = cli("models", "card", "tiny@production")
    assert card.code == 0
    assert "# Model card: tiny v1" in card.out and base.digest in card.out
    assert "`support-clean@1` (train)" in card.out and "A tiny Llama." in card.out
    assert "| lr | 0.001 |" in card.out and "production" in card.out

    listed = cli("models", "list")
    assert "tiny" in listed.out and "production→1" in listed.out
    audit_list = cli("audit", "list", "--action", "model.alias.set")
    assert "launch" in audit_list.out


def test_cli_errors_are_one_line_and_nonzero(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("models", "show", "nothing@production")
    assert missing.code == 2 and missing.err.startswith("error: no registered model")
    assert "Traceback" not in missing.err
    bad = cli("models", "register", tmp_path / "nope", "--name", "m")
    assert bad.code == 2 and "does not exist" in bad.err
    usage = cli("models", "alias", "set", "m")
    assert usage.code != 0
    helped = cli("--help")
    assert helped.code == 0 and "models" in helped.out and "audit" in helped.out


def test_a_registered_directory_keeps_its_input_format_on_show_and_card(  # type: ignore[no-untyped-def]
    cli, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from llmops.train.input_format import InputFormat, write_input_format

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    recorded = InputFormat(
        trained_on="prompt_completion", add_bos=True, bos_token="<s>", chat="prompt", stop_tokens=("</s>",)
    )
    write_input_format(recorded, model)
    assert cli("models", "register", model, "--name", "intent").code == 0
    assert cli("models", "register", tiny_model_dir, "--name", "imported").code == 0

    assert Registry.from_home(open_home()).get("intent@1").tags["input_format"]["chat"] == "prompt"
    shown = cli("models", "show", "intent@1").out
    assert "trained on prompt_completion rows" in shown and "one user message" in shown
    card = cli("models", "card", "intent@1").out
    assert "## Input format" in card and "refused with 400 (use `/v1/completions`)" in card
    assert "| generation stops at | `</s>` |" in card
    assert "No input format was recorded" in cli("models", "card", "imported@1").out
    assert "not recorded" in cli("models", "show", "imported@1").out
