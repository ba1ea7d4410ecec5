"""The README's examples run as written (on both dialects) and its test command matches CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def runnable_examples() -> list[str]:
    """Blocks that are whole programs: the quickstart, the asyncio and the Skill examples."""
    markers = ("with Store(", "asyncio.run(", "Skill()")
    return [block for block in PYTHON_BLOCKS if any(marker in block for marker in markers)]


def test_readme_has_the_quickstart_and_the_asyncio_example() -> None:
    examples = runnable_examples()
    assert any("AsyncStore" in block for block in examples)
    assert any("with Store(" in block for block in examples)


@pytest.mark.parametrize("index", range(len(runnable_examples())))
def test_readme_example_runs(index: int, migrated_url: str, tmp_path: Path) -> None:
    run_example(runnable_examples()[index], migrated_url, tmp_path)


def test_the_edit_a_message_example_runs_after_the_quickstart(
    migrated_url: str, tmp_path: Path
) -> None:
    edit = next(block for block in PYTHON_BLOCKS if ".replace(content=" in block)
    run_example(runnable_examples()[0] + "\n" + edit, migrated_url, tmp_path)


def run_example(code: str, url: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code.replace("sqlite:///sessions.db", url))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    command = ".venv/bin/python -m pytest"
    assert f"&& {command}\n" in README
    assert f"\n{command} " in (ROOT / ".ci" / "run").read_text()


def test_every_test_the_guarantees_name_exists() -> None:
    named = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", README))
    assert len(named) >= 20
    missing = [
        f"{path}::{name}"
        for path, name in sorted(named)
        if f"def {name}(" not in (ROOT / path).read_text()
    ]
    assert missing == []
