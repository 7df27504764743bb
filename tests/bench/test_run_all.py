"""The benchmark runner's section selection and report writer, with trivial fake sections."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import run_all


def test_every_section_script_exists_and_names_are_unique() -> None:
    names = [s.name for s in run_all.SECTIONS]
    assert len(names) == len(set(names))
    for section in run_all.SECTIONS:
        assert (run_all.ROOT / section.full[0]).is_file(), section.name
        assert section.quick[0] == section.full[0]


def test_select_only_skip_and_unknown() -> None:
    names = [s.name for s in run_all.select(run_all.SECTIONS, "engine,ui", None)]
    assert names == ["engine", "ui"]
    assert "vllm" not in [s.name for s in run_all.select(run_all.SECTIONS, None, "vllm")]
    with pytest.raises(ValueError, match="nosuch"):
        run_all.select(run_all.SECTIONS, "nosuch", None)


def test_fake_sections_run_and_land_in_the_report(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text("print('| metric | 42 |')\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('broken')\nsys.exit(3)\n")
    sections = [
        run_all.Section("good", "A good one", [str(good)], [str(good)]),
        run_all.Section("bad", "A bad one", [str(bad)], [str(bad)], prepare=lambda: ["--flag"]),
    ]
    outcomes = [run_all.run_section(s, quick=True) for s in sections]
    assert [o.returncode for o in outcomes] == [0, 3]
    assert outcomes[1].command[-1] == "--flag"
    report = run_all.write_report(outcomes, tmp_path / "out" / "report.md", quick=True).read_text()
    assert "| good | ok |" in report
    assert "| bad | failed (3) |" in report
    assert "| metric | 42 |" in report and "broken" in report
    assert report.count("Load before") == 2


def test_cli_rejects_unknown_section_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_all.main(["--only", "nosuch", "--list"])
    assert exit_info.value.code == 2
    assert "nosuch" in capsys.readouterr().err
