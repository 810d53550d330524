from __future__ import annotations

import subprocess
import sys
import types

import exospherehost


def _isort_style(name: str) -> tuple[int, str]:
    """The order ruff (RUF022) keeps `__all__` in: CONSTANTS, then Classes, then the rest."""
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_all_lists_exactly_the_public_names_sorted() -> None:
    public = [
        name
        for name, value in vars(exospherehost).items()
        if (not name.startswith("_") or name == "__version__") and not isinstance(value, types.ModuleType)
    ]

    assert exospherehost.__all__ == sorted(public, key=_isort_style)


def test_union_of_both_upstream_surfaces_is_exported() -> None:
    seed = {"Runtime", "BaseNode", "StateManager", "TriggerState", "VERSION"}
    head = {
        "Runtime",
        "BaseNode",
        "StateManager",
        "VERSION",
        "PruneSignal",
        "ReQueueAfterSignal",
        "UnitesStrategyEnum",
        "UnitesModel",
        "GraphNodeModel",
        "RetryStrategyEnum",
        "RetryPolicyModel",
        "StoreConfigModel",
        "CronTrigger",
    }

    assert seed | head <= set(exospherehost.__all__)


def test_flow_control_and_why_models_are_exported() -> None:
    ours = {"ConcurrencyModel", "RateLimitModel", "StateWhy", "RunWhy", "WaitingGroup"}

    assert ours <= set(exospherehost.__all__)


def test_version() -> None:
    assert exospherehost.__version__ == "0.1.0"
    assert exospherehost.__version__ == exospherehost.VERSION


def test_import_pulls_in_no_server_modules() -> None:
    code = (
        "import sys, exospherehost, exospherehost.testing\n"
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'state_manager', 'fastapi', 'beanie', 'motor'})\n"
        "print(','.join(bad))\n"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == ""


def test_only_the_http_modules_import_httpx() -> None:
    """`_http` (the async client) and `_sync_http` (the heartbeat thread's client)."""
    code = (
        "import importlib, pkgutil, exospherehost\n"
        "for mod in pkgutil.iter_modules(exospherehost.__path__):\n"
        "    m = importlib.import_module('exospherehost.' + mod.name)\n"
        "    if 'httpx' in vars(m): print(mod.name)\n"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert sorted(result.stdout.split()) == ["_http", "_sync_http"]
