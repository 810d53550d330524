"""No command's own option hides a shared one (`--url`, `--key`, `-n/--namespace`, `-o`): a
filter named `--key` once set the API key instead (found by trying `exosphere audit --key`)."""

from __future__ import annotations

from collections.abc import Iterator

import click

from exospherehost.cli.app import cli


def _commands(group: click.Group, path: str = "exosphere") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


def test_no_command_reuses_an_option_name_or_a_parameter_name() -> None:
    clashes = []
    for where, command in _commands(cli):
        names: dict[str, str] = {}
        flags: dict[str, str] = {}
        for param in command.params:
            for flag in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                if flag in flags:
                    clashes.append(f"{where}: {flag} is both {flags[flag]} and {param.name}")
                flags[flag] = str(param.name)
            if param.name in names:
                clashes.append(f"{where}: two parameters are named {param.name}")
            names[str(param.name)] = where
    assert not clashes, clashes
