"""app re-exports nothing (importing it must stay cheap: `rickhouse --help` answers at once)."""

from __future__ import annotations

import subprocess
import sys


def test_app_exports_nothing_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, app; assert app.__all__ == [];"
        "heavy = {'store', 'numba', 'duckdb', 'fastapi', 'pyarrow'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
