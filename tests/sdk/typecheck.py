"""Run mypy (strict) on a snippet of user code, as an editor or a CI type check would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy_error_lines(code: str, directory: Path) -> tuple[list[int], str]:
    """The line numbers mypy --strict reports errors on, and its whole output."""
    source = directory / "user_code.py"
    source.write_text(code)
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "--cache-dir",
        os.devnull,
        "--config-file",
        os.devnull,
        str(source),
    ]
    # The SDK is installed in editable mode (an import hook mypy cannot follow): point at it.
    env = {**os.environ, "MYPYPATH": str(ROOT / "sdk")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=directory, env=env)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    return sorted({int(line.split(":")[1]) for line in errors}), result.stdout
