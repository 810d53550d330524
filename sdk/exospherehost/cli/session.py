"""What every command shares: the connection options, the exit codes, and one call to the server.

Options `--url`, `--key`, `-n/--namespace` and `-o/--output` are accepted before the command
(`exosphere -n demo run list`) and after it (`exosphere run list -n demo`); the later one wins,
then the environment (`EXOSPHERE_STATE_MANAGER_URI`, `EXOSPHERE_API_KEY`, `EXOSPHERE_NAMESPACE`).

Exit codes: 0 success; 1 the operation or the watched run failed (a 4xx answer, a graph
INVALID, a run FAILED or CANCELLED, a stalled node in `queues`); 2 a usage error; 3 the server is
unreachable, refused the key (401) or failed (5xx); a key that may not do something (403) exits 1.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import click

from ..errors import (
    AuthenticationError,
    GraphValidationError,
    ServerError,
    StateManagerError,
    TransportError,
    format_detail,
)
from ..state_manager import StateManager

__all__ = [
    "EXIT_FAILED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Config",
    "Failed",
    "Unavailable",
    "call",
    "client",
    "command_options",
    "common_options",
    "config",
    "transport_problem",
]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

URL_ENV = "EXOSPHERE_STATE_MANAGER_URI"
KEY_ENV = "EXOSPHERE_API_KEY"
NAMESPACE_ENV = "EXOSPHERE_NAMESPACE"

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_META = "exosphere.options"


class Failed(click.ClickException):
    """The operation failed (exit 1): the message goes to stderr as `error: ...`."""

    exit_code = EXIT_FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class Unavailable(Failed):
    """The server could not be used: unreachable, the key refused, or a 5xx (exit 3)."""

    exit_code = EXIT_UNAVAILABLE


@dataclass(frozen=True)
class Config:
    """The resolved options of one invocation."""

    url: str | None
    key: str | None
    namespace: str | None
    output: str

    @property
    def json(self) -> bool:
        return self.output == "json"

    def require_namespace(self) -> str:
        if not self.namespace:
            raise click.UsageError(f"No namespace: pass -n/--namespace or set {NAMESPACE_ENV}")
        return self.namespace


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and param.name is not None:
        ctx.find_root().meta.setdefault(_META, {})[param.name] = value
    return value


def common_options(*, show_connection: bool = True) -> Callable[[F], F]:
    """The shared options: on the root group, and on every command with `--url`/`--key` hidden.

    Their values are not passed to the command; read them with `config()`.
    """

    def option(*names: str, **attrs: Any) -> Callable[[F], F]:
        return click.option(*names, expose_value=False, callback=_remember, **attrs)

    def decorate(command: F) -> F:
        options = [
            option(
                "--url",
                metavar="URL",
                help=f"State manager base URL [env {URL_ENV}]",
                hidden=not show_connection,
            ),
            option("--key", metavar="KEY", help=f"API key [env {KEY_ENV}]", hidden=not show_connection),
            option("-n", "--namespace", metavar="NS", help=f"Namespace [env {NAMESPACE_ENV}]"),
            option(
                "-o",
                "--output",
                type=click.Choice(["table", "json"], case_sensitive=False),
                help="table (the default) or json (only JSON on stdout)",
            ),
        ]
        for add in reversed(options):
            command = add(command)
        return command

    return decorate


command_options = common_options(show_connection=False)
"""`common_options` as every command takes them."""


def config(ctx: click.Context | None = None) -> Config:
    """The options of this invocation: given ones first, then the environment."""
    ctx = ctx or click.get_current_context()
    given: dict[str, Any] = ctx.find_root().meta.get(_META, {})
    output = str(given.get("output") or "table").lower()
    return Config(
        url=given.get("url") or os.environ.get(URL_ENV) or None,
        key=given.get("key") or os.environ.get(KEY_ENV) or None,
        namespace=given.get("namespace") or os.environ.get(NAMESPACE_ENV) or None,
        output=output,
    )


def client(cfg: Config, namespace: str | None = None) -> StateManager:
    """A `StateManager` for the configured server (a usage error if the URL or key is missing)."""
    if not cfg.url:
        raise click.UsageError(f"No server URL: pass --url or set {URL_ENV}")
    if not cfg.key:
        raise click.UsageError(f"No API key: pass --key or set {KEY_ENV}")
    return StateManager(namespace or cfg.require_namespace(), state_manager_uri=cfg.url, key=cfg.key)


def call(cfg: Config, work: Callable[[StateManager], Awaitable[T]], *, namespace: str | None = None) -> T:
    """Run `work` with a client in a fresh event loop; map SDK errors to exit codes."""
    sm = client(cfg, namespace)

    async def session() -> T:
        async with sm:
            return await work(sm)

    try:
        return asyncio.run(session())
    except TransportError as exc:
        raise Unavailable(_unreachable(cfg, exc)) from exc
    except StateManagerError as exc:
        raise _server_error(exc) from exc
    except GraphValidationError as exc:
        raise Failed(str(exc)) from exc
    except ValueError as exc:  # the SDK's argument checks, before anything is sent
        raise click.UsageError(str(exc)) from exc


def transport_problem(exc: TransportError) -> str:
    """`connection refused` when nothing listens at the address; else the SDK's message.

    (The SDK's aiohttp transport reports a refused connection as a `ConnectTimeout`, which
    misleads: the refusal is found in the chain of causes.)
    """
    return "connection refused" if _refused(exc) else str(exc)


def _refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _unreachable(cfg: Config, exc: TransportError) -> str:
    if _refused(exc):
        return f"cannot reach the server at {cfg.url}: connection refused"
    return str(exc)  # names the address and the cause already


def _server_error(exc: StateManagerError) -> Failed:
    where = f"{exc.status_code} {exc.method} {exc.path}".strip()
    message = f"{format_detail(exc.detail)} ({where})"
    if isinstance(exc, AuthenticationError):
        return Unavailable(f"the server refused the API key: {message}; check --key or {KEY_ENV}")
    if exc.status_code == 403:
        return Failed(f"not allowed: {message}")
    if isinstance(exc, ServerError):
        return Unavailable(f"the server failed: {message}")
    return Failed(message)
