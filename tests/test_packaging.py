"""What a user gets from the installed package: types for their type checker, a license."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_users_strict_mypy_sees_the_packages_types(tmp_path: Path) -> None:
    user_file = tmp_path / "user_code.py"
    user_file.write_text(
        "from sqlsessions import Store\n"
        "\n"
        "def count(store: Store) -> str:\n"
        "    return store.list()\n",  # a list[str] is not a str: mypy must know that
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user_file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "missing library stubs or py.typed marker" not in output, output
    assert 'Incompatible return value type (got "list[str]", expected "str")' in output, output


def test_the_package_ships_a_py_typed_marker_and_a_license_matching_pyproject() -> None:
    assert (ROOT / "src" / "sqlsessions" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert re.search(r'^license = "MIT"$', pyproject, re.MULTILINE)
    assert license_text.startswith("MIT License")
