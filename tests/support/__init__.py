"""Helpers shared by the test directories: a live state-manager server and a small REST client."""

from .api import TERMINAL_STATUSES, StateManagerAPI
from .live_server import (
    LiveServer,
    ServerStartError,
    live_server_factory,
    running_server,
    start_server,
)
from .scenario_process import ScenarioProcess, ScenarioRunner, scenario_process

__all__ = [
    "TERMINAL_STATUSES",
    "LiveServer",
    "ScenarioProcess",
    "ScenarioRunner",
    "ServerStartError",
    "StateManagerAPI",
    "live_server_factory",
    "running_server",
    "scenario_process",
    "start_server",
]
