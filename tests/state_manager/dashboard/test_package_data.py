"""The templates and static assets ship inside the package (a wheel, not only a checkout)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import state_manager.dashboard

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = Path(state_manager.dashboard.__file__).parent


def test_every_template_and_asset_is_listed_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["state_manager.dashboard"]
    files = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*") if p.is_file()]
    shipped = [f for f in files if not f.endswith((".py", ".pyc")) and "__pycache__" not in f]

    assert {"templates/base.html", "static/dashboard.css", "static/dashboard.js"} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
