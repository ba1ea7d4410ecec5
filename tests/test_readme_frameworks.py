"""The README's framework examples run as written (on both dialects)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = dict(
    re.findall(
        r"```python\n# sqlsessions example: ([\w-]+)\n(.*?)```",
        (ROOT / "README.md").read_text(),
        flags=re.DOTALL,
    )
)

pytestmark = pytest.mark.frameworks


@pytest.mark.parametrize("framework", ["openai-agents", "langchain"])
def test_the_readme_example_of_each_framework_runs(
    framework: str, migrated_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(EXAMPLES[framework].replace("sqlite:///sessions.db", migrated_url))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_importing_sqlsessions_and_its_integrations_package_imports_no_framework() -> None:
    code = (
        "import sys, sqlsessions, sqlsessions.integrations\n"
        "loaded = [m for m in ('agents', 'openai', 'langchain_core') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
