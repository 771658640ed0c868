"""The layering rule of DESIGN.md: app -> cluster -> store -> {online, offline}; arrows point down."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "cluster", "store", "offline", "online")
FORBIDDEN = {
    "online": {"offline", "store", "app"},
    "offline": {"online", "store", "app"},
    "store": {"app", "cluster"},
    "cluster": {"app", "fastapi", "starlette", "uvicorn"},  # no HTTP server types below app
    "app": set(),
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_downward(package: str) -> None:
    offenders = []
    if not (ROOT / package).is_dir():
        pytest.skip(f"package {package} does not exist yet")
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "layering violated:\n" + "\n".join(offenders)
