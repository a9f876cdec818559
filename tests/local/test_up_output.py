"""What `amlops up` prints: user and step text verbatim, hints that can be pasted as they are."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

from amlops.cli import up, view
from amlops.core.manifests import load_tree

from .conftest import ROOT

# a failing step's last line, a condition message: rich would read these as markup and emoji
USER_TEXT = "error: bad [/model] dir, [bold]kept[/bold] :thumbs_up:"


def _render(renderable: object) -> str:
    out = io.StringIO()
    Console(width=400, file=out).print(renderable)
    return out.getvalue()


def test_the_status_table_shows_condition_messages_verbatim() -> None:
    conditions = [{"type": "Stalled", "status": "True", "reason": "[r]", "message": USER_TEXT}]
    row = view.Row("Pipeline", "[ws]", "[/p]", {"conditions": conditions})
    text = _render(view.status_table([row], title="state in /tmp/[/x]"))
    assert USER_TEXT in text
    assert "[ws]" in text and "[/p]" in text and "[r]" in text and "/tmp/[/x]" in text


def test_printed_lines_take_their_parts_literally() -> None:
    assert _render(view.line(("smoke e:", "red"), f" {USER_TEXT}")).strip() == (
        f"smoke e: {USER_TEXT}"
    )


def _program(tmp_path: Path) -> Path:
    program = tmp_path / "venv" / "bin" / "amlops"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return program


def test_the_hints_name_the_program_as_it_can_be_called_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = _program(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("PATH", "/nonexistent")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["venv/bin/amlops"])
    assert view.prog() == "venv/bin/amlops"  # below the cwd: relative

    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "argv", [str(program)])
    assert view.prog() == str(program)  # not below the cwd: absolute, never ../../

    monkeypatch.setenv("PATH", str(program.parent))
    assert view.prog() == "amlops"  # PATH finds this very program

    other = _program(elsewhere)
    monkeypatch.setenv("PATH", str(other.parent))
    assert view.prog() == str(program)  # PATH finds another amlops: not that one


def test_the_hints_keep_a_state_dir_that_is_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["amlops"])
    manifests = load_tree([ROOT / "manifests"]).manifests

    up._what_next(Path("manifests"), "/tmp/demo state", manifests)
    hints = [line.strip() for line in capsys.readouterr().out.splitlines() if "#" in line]
    commands = [hint.split("   #")[0].strip() for hint in hints]
    assert {c.split()[1] for c in commands} == {"up", "invoke", "run", "status"}
    assert all(c.endswith("--state-dir '/tmp/demo state'") for c in commands), commands
    sample = ROOT / "manifests" / "src" / "score" / "sample-request.json"
    assert f"--data {sample} " in next(c for c in commands if " invoke " in c)  # not ../../

    up._what_next(Path("manifests"), ".amlops", manifests)
    assert "--state-dir" not in capsys.readouterr().out
