"""The official SDK release's venv (Python >= 3.12), built as the compatibility suite builds it.

The one builder of that venv: the compatibility suite (`tests/compat/conftest.py`) uses it too.
It lives in `<repo>/.cache/compat/exospherehost-<version>/`, is complete when its `.compat-ready`
file holds the version, and is built once (under a lock file) and reused.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.processes import REPO_ROOT

CACHE_DIR = REPO_ROOT / ".cache" / "compat"
MARKER_NAME = ".compat-ready"
MIN_PYTHON = (3, 12)


def python_version(executable: str) -> tuple[int, int] | None:
    """(major, minor) of a Python interpreter, or None when it does not run."""
    try:
        completed = subprocess.run(
            [executable, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    major, minor = completed.stdout.split()
    return int(major), int(minor)


def find_python312() -> str:
    """EXOSPHERE_COMPAT_PYTHON, a pyenv 3.12.x, or python3.12 on PATH."""
    candidates = [os.environ.get("EXOSPHERE_COMPAT_PYTHON", "")]
    roots = [Path(r) for r in (os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")) if r]
    for root in roots:
        candidates += [str(p / "bin" / "python3.12") for p in sorted((root / "versions").glob("3.12*"))]
    candidates.append(shutil.which("python3.12") or "")
    for candidate in filter(None, candidates):
        version = python_version(candidate)
        if version is not None and version >= MIN_PYTHON:
            return candidate
    raise RuntimeError(
        "no Python >= 3.12 found for the official SDK (set EXOSPHERE_COMPAT_PYTHON or `pyenv install 3.12`)"
    )


def _run(command: list[str], what: str, timeout: float) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({completed.returncode}): {(completed.stdout + completed.stderr)[-3000:]}"
        )
    return completed.stdout


def official_sdk_python(version: str = "0.0.3", interpreter: str | None = None) -> Path:
    """The interpreter of a venv holding `exospherehost==version`; built on first use (with
    `interpreter`, or the first Python >= 3.12 found) and reused by the compatibility suite.

    Raises:
        RuntimeError: No Python >= 3.12, or building the venv failed.
    """
    venv = CACHE_DIR / f"exospherehost-{version}"
    python = venv / "bin" / "python"
    marker = venv / MARKER_NAME
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == version and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # a half-built venv
        _run([interpreter or find_python312(), "-m", "venv", str(venv)], f"creating {venv}", 120)
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                f"exospherehost=={version}",
            ],
            f"pip install exospherehost=={version}",
            600,
        )
        installed = _run(
            [str(python), "-c", "import exospherehost; print(exospherehost.VERSION)"], "import", 60
        )
        if installed.strip() != version:
            raise RuntimeError(f"{venv} has exospherehost {installed.strip()}, wanted {version}")
        marker.write_text(version)
    return python


def clean_env(base: dict[str, str]) -> dict[str, str]:
    """The environment for a process in that venv: nothing of this repository's Python leaks in
    (our SDK is also called `exospherehost`; a PYTHONPATH to ./sdk would shadow the release)."""
    return {
        name: value
        for name, value in base.items()
        if not name.startswith(("PYTHON", "EXOSPHERE_", "VIRTUAL_ENV", "PYENV_VERSION"))
    }
