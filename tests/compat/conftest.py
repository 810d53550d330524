"""Compat suite plumbing: official SDK venvs (Python 3.12), our live server, scenario processes.

The official ``exospherehost`` releases need Python >= 3.12, while this repository's own venv may be
3.11, so each release gets its own venv under ``<repo>/.cache/compat/exospherehost-<version>/``,
built once (a marker file holding the version marks it complete) and reused by later runs.
A scenario script from ``scenarios/`` runs in that venv as a subprocess against our server, prints
one JSON manifest line, and keeps its runtimes alive until we close its stdin.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the repo root
    sys.path.insert(0, str(REPO_ROOT))

# The shared checks assert outside the test modules; rewrite them too so failures show both sides.
pytest.register_assert_rewrite("tests.compat.checks")

from benchmarks.official import clean_env, official_sdk_python, python_version  # noqa: E402
from tests.support.api import StateManagerAPI  # noqa: E402
from tests.support.live_server import LiveServer, start_server  # noqa: E402
from tests.support.scenario_process import ScenarioProcess, ScenarioRunner, scenario_process  # noqa: E402

COMPAT_DIR = Path(__file__).resolve().parent
SCENARIOS_DIR = COMPAT_DIR / "scenarios"
MIN_PYTHON = (3, 12)
LOG_TAIL_LINES = 120

# Read once at import: the root conftest's autouse fixture strips EXOSPHERE_* from each test's env.
_EXPLICIT_PYTHON = os.environ.get("EXOSPHERE_COMPAT_PYTHON")

# Logs worth showing when a compat test fails: label -> file.
_LOGS: dict[str, Path] = {}


# ---------------------------------------------------------------- Python 3.12 interpreter


def _pyenv_candidates() -> Iterator[str]:
    roots = [Path(root) for root in (os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")) if root]
    versions = sorted(
        {path.name for root in roots for path in (root / "versions").glob("3.12*") if path.is_dir()},
        reverse=True,
    )
    pyenv = shutil.which("pyenv") or next(
        (str(root / "bin" / "pyenv") for root in roots if (root / "bin" / "pyenv").exists()), None
    )
    for version in versions:
        if pyenv:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                completed = subprocess.run(
                    [pyenv, "which", "python3.12"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                    env={**os.environ, "PYENV_VERSION": version},
                )
                if completed.returncode == 0 and completed.stdout.strip():
                    yield completed.stdout.strip()
        for root in roots:
            yield str(root / "versions" / version / "bin" / "python3.12")


def find_compat_python() -> str:
    """A Python >= 3.12 interpreter for the official SDKs; fails the test run if there is none."""
    explicit = _EXPLICIT_PYTHON
    if explicit:
        version = python_version(explicit)
        if version is None or version < MIN_PYTHON:
            pytest.fail(
                f"EXOSPHERE_COMPAT_PYTHON={explicit!r} is not a working Python >= 3.12 (got {version}); "
                "the compat suite needs one to run the official exospherehost SDKs",
                pytrace=False,
            )
        return explicit
    candidates = [*_pyenv_candidates()]
    which = shutil.which("python3.12")
    if which:
        candidates.append(which)
    for candidate in candidates:
        version = python_version(candidate)
        if version is not None and version >= MIN_PYTHON:
            return candidate
    pytest.fail(
        "no Python >= 3.12 interpreter found (tried EXOSPHERE_COMPAT_PYTHON, pyenv 3.12.x, "
        f"~/.pyenv/versions/3.12*/bin/python3.12, python3.12 on PATH: {candidates}). The official "
        "exospherehost SDKs need Python 3.12; install one (e.g. `pyenv install 3.12`) or set "
        "EXOSPHERE_COMPAT_PYTHON. Compatibility must be proven, so these tests fail instead of skipping.",
        pytrace=False,
    )


# ---------------------------------------------------------------- official SDK venvs


def sdk_venv_python(version: str) -> Path:
    """The interpreter of a venv holding ``exospherehost==version``: built on first use, then
    cached (the benchmarks build and reuse the same one, see benchmarks/official.py)."""
    try:
        return official_sdk_python(version, find_compat_python())
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"the official SDK {version} venv: {exc}", pytrace=False)


# ---------------------------------------------------------------- server and REST client


@pytest.fixture(scope="session")
def compat_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """OUR state manager on a loopback port (embedded store), shared by the whole compat session."""
    server = start_server()
    _LOGS["state manager log"] = server.log_path
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed == 0:  # keep the evidence only when something failed
            server.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def compat_api(compat_server: LiveServer) -> Iterator[StateManagerAPI]:
    api = StateManagerAPI(compat_server.base_url, compat_server.api_key)
    try:
        yield api
    finally:
        api.close()


# ---------------------------------------------------------------- scenario processes


def _scenario_env(server: LiveServer, version: str, workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    # Nothing from this repository's Python environment may leak in: our own SDK is also called
    # `exospherehost`, and a PYTHONPATH pointing at ./sdk would shadow the official release.
    inherited = clean_env(dict(os.environ))
    tag = version.replace(".", "")
    return {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "EXOSPHERE_STATE_MANAGER_URI": server.base_url,
        "EXOSPHERE_API_KEY": server.api_key,
        "EXOSPHERE_LOG_LEVEL": "INFO",
        "COMPAT_NAMESPACE_PREFIX": f"compat-{tag}-{os.getpid()}",
        "COMPAT_WORKDIR": str(workdir),
        "COMPAT_MAX_SECONDS": "900",
        **extra,
    }


@pytest.fixture(scope="session")
def scenario_runner(request: pytest.FixtureRequest, compat_server: LiveServer) -> ScenarioRunner:
    """``with scenario_runner(version, script, **env) as proc:`` runs a scenario script in the
    official SDK's venv against our server, returns once its manifest is printed, and stops it on exit."""

    @contextlib.contextmanager
    def run(version: str, script: str, **extra_env: str) -> Iterator[ScenarioProcess]:
        python = sdk_venv_python(version)
        workdir = Path(tempfile.mkdtemp(prefix=f"exosphere-compat-{version}-"))
        _LOGS[f"scenario {script} log"] = workdir / "scenario.log"
        with scenario_process(
            [str(python), str(SCENARIOS_DIR / script)],
            env=_scenario_env(compat_server, version, workdir, extra_env),
            workdir=workdir,
            cwd=SCENARIOS_DIR,
        ) as proc:
            yield proc
        if request.session.testsfailed == 0:
            shutil.rmtree(workdir, ignore_errors=True)

    return run


# ---------------------------------------------------------------- failure reports


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the server and scenario logs to a failed compat test's report."""
    report: pytest.TestReport = yield
    if report.failed:
        for label, path in _LOGS.items():
            if path.exists():
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                title = f"{label}: {path} (last {LOG_TAIL_LINES} lines)"
                report.sections.append((title, "\n".join(lines[-LOG_TAIL_LINES:])))
    return report
