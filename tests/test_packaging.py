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


def _distribution(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_package_the_core_imports_is_a_declared_dependency() -> None:
    """A plain `pip install sqlsessions` must be able to import the library and run the CLI;
    the framework adapters and the viewer (their own extras) are left out."""
    import ast
    from importlib import metadata

    requirements = metadata.requires("sqlsessions") or []
    declared = {_distribution(r) for r in requirements if "extra ==" not in r}
    providers = metadata.packages_distributions()
    missing: dict[str, str] = {}
    package = ROOT / "src" / "sqlsessions"
    for path in package.rglob("*.py"):
        if path.relative_to(package).parts[0] in ("integrations", "ui"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("sqlsessions", "__future__"):
                    continue
                distributions = {_distribution(d) for d in providers.get(top, [top])}
                if not distributions & declared:
                    missing[top] = str(path.relative_to(ROOT))
    assert not missing, f"imported but not in [project].dependencies: {missing}"
