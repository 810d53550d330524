"""The `exosphere` command line: operate a state manager over its REST API.

Installed as a console script with the SDK (`pip install ./sdk`); also `python -m
exospherehost.cli`. It talks to the server only through `StateManager`. See docs/cli.md.
"""

from .app import cli, main

__all__ = ["cli", "main"]
