"""`python -m state_manager [--host H] [--port P] [--dev] [--data-dir DIR | --memory]`.

Settings -> the store -> uvicorn. With MONGO_URI set the server uses that MongoDB. Without it,
it runs the embedded store (nx-27017, the MongoDB wire protocol on SQLite) as a child process
with its data in `./.exosphere/` (`--data-dir DIR` or EXOSPHERE_DATA_DIR moves it): data survives
restarts, the directory is locked against a second server, and the engine stops with the server,
even one killed with SIGKILL. `--memory` (EXOSPHERE_MEMORY=1) is a throwaway in-memory store.

`--dev` (what `make run` uses) is for trying things out on one machine: when no key is set it
uses an API key and an encryption key generated once and kept in the data directory
(`dev-keys.json`, mode 0600), and prints the API key: the same one on every start. Keys set in
the environment or `.env` win.

Before serving, it refuses (exit code 2, a message naming the variable, the port, the directory
or the engine) bad settings, a port it cannot listen on (in use), a data directory that cannot
be used or is in use, an engine that does not start, and an encryption key that cannot decrypt
the secrets already stored.

If the embedded engine exits while the server runs (it crashed, or was killed), the server logs
one error (`embedded_store_exited`: the engine's exit code and its log file), answers 503 to the
requests meanwhile, and exits with code 3 within seconds, releasing the data directory: a
supervisor (docker's restart policy, systemd's Restart=) then starts it again on the same data.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import errno
import functools
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import uvicorn
from pydantic import ValidationError

from state_manager.app import create_app
from state_manager.config import Settings
from state_manager.observability import configure_logging
from state_manager.services.context import WorkSignal
from state_manager.services.startup import check_secrets_key
from state_manager.store import Engine, StoreError, ensure_data_dir, open_data_dir, run_engine
from state_manager.store.embedded import ENGINE, exit_reason
from state_manager.store.keys import DevKeys, load_or_create_dev_keys, new_dev_keys
from state_manager.store.status import StoreStatus

log = structlog.get_logger("state_manager")

# The embedded engine exited under the server: a supervisor should start it again.
STORE_LOST_EXIT_CODE = 3

DEVELOPMENT_WARNING = (
    "MODE=development: the published example keys are accepted."
    " For trying things out only: never use development mode in production."
)

KEY_FIELDS = ("state_manager_secret", "secrets_encryption_key")
# Stand-ins that let the other settings (the data directory among them) be read before the
# `--dev` keys are loaded from that directory; never served (the app is built with the real ones).
_PLACEHOLDERS = {
    "state_manager_secret": "placeholder",
    "secrets_encryption_key": base64.urlsafe_b64encode(bytes(32)).decode(),
}


def _explain(exc: ValidationError) -> str:
    """One line per bad setting, named by its environment variable (never its value)."""
    lines = []
    for error in exc.errors(include_input=False):
        variable = str(error["loc"][0]).upper() if error["loc"] else "settings"
        lines.append(f"  {variable}: {error['msg']}")
    hint = "Set them in the environment or in .env (see .env.example), or use --dev to try things out."
    return "error: invalid settings\n" + "\n".join(lines) + "\n" + hint + "\n"


def _read_settings(overrides: dict[str, Any], *, dev: bool) -> tuple[Settings, list[str]]:
    """Settings from the environment, `.env` and `overrides` (the command line).

    With `dev`, the keys set nowhere are returned by name, stood in for by placeholders until
    `_use_dev_keys` replaces them.
    """
    try:
        return Settings(**overrides), []
    except ValidationError as exc:
        missing = [
            name
            for name in KEY_FIELDS
            if any(error["type"] == "missing" and error["loc"] == (name,) for error in exc.errors())
        ]
        if not dev or not missing:
            raise
    # Still raises for anything else that is wrong, now without the missing keys.
    values: dict[str, Any] = {**overrides, **{name: _PLACEHOLDERS[name] for name in missing}}
    return Settings(**values), missing


def _use_dev_keys(overrides: dict[str, Any], missing: list[str], keys: DevKeys) -> Settings:
    stored = {
        "state_manager_secret": keys.state_manager_secret,
        "secrets_encryption_key": keys.secrets_encryption_key,
    }
    values: dict[str, Any] = {**overrides, **{name: stored[name] for name in missing}}
    settings = Settings(**values)
    if "state_manager_secret" in missing:
        print(f"Development API key (x-api-key): {keys.state_manager_secret}", flush=True)  # noqa: T201
        kept = f"kept in {keys.path}: the same on every start" if keys.path else "new on every start"
        print(f"  ({kept})", flush=True)  # noqa: T201
    return settings


def _open_store(
    stack: contextlib.ExitStack,
    settings: Settings,
    overrides: dict[str, Any],
    missing: list[str],
    status: StoreStatus,
) -> Settings:
    """Lock the data directory, fill in the `--dev` keys, start the embedded engine; the final settings.

    Everything started is stopped by `stack`. If the engine exits on its own, `status` is told.
    """
    embedded = not settings.mongo_uri and not settings.mock_store
    throwaway = embedded and settings.exosphere_memory
    data_dir = None
    if embedded and not throwaway:
        data_dir = stack.enter_context(open_data_dir(settings.exosphere_data_dir))
    if missing:
        if throwaway:
            keys = new_dev_keys()
        else:
            folder = data_dir.path if data_dir else ensure_data_dir(settings.exosphere_data_dir)
            keys = load_or_create_dev_keys(folder)
        settings = _use_dev_keys(overrides, missing, keys)
    if not embedded:
        return settings
    engine = stack.enter_context(run_engine(data_dir, on_exit=functools.partial(_engine_exited, status)))
    if engine.data_dir is None:
        where = "in memory (--memory): a throwaway store, NOTHING is kept when the server stops"
        log.warning(
            "embedded_store", engine="nx-27017", data_dir=None, uri=engine.uri, pid=engine.pid, message=where
        )
    else:
        where = f"{engine.data_dir} (embedded store: kept across restarts; --memory for a throwaway one)"
        log.info(
            "embedded_store",
            engine="nx-27017",
            data_dir=str(engine.data_dir),
            kept_across_restarts=True,
            uri=engine.uri,
            pid=engine.pid,
            log_file=str(engine.log_path),
        )
    if settings.development:
        print(f"Data: {where}", flush=True)  # noqa: T201
    return settings.model_copy(update={"mongo_uri": engine.uri})


def _engine_exited(status: StoreStatus, engine: Engine, returncode: int) -> None:
    """The engine exited under the server (called from the thread that watches it): one error
    line, then `status` turns every answer into a 503 and stops the server (see `_serve`)."""
    problem = (
        f"the embedded store ({ENGINE}) {exit_reason(returncode)}: the server is stopping,"
        " to be restarted by its supervisor"
    )
    log.error(
        "embedded_store_exited",
        exit_code=returncode,
        log_file=str(engine.log_path),
        message=f"{problem} (exit code {STORE_LOST_EXIT_CODE}); the engine's log is {engine.log_path}",
    )
    status.lost(problem)


def _store_conflict(settings: Settings) -> str | None:
    if settings.exosphere_memory and settings.mongo_uri:
        return (
            "--memory (EXOSPHERE_MEMORY) is for the embedded store, but MONGO_URI is set: unset one of them"
        )
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m state_manager",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--dev", action="store_true", help="development mode: missing keys generated once, kept and printed"
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where the embedded store keeps its data (default ./.exosphere; env EXOSPHERE_DATA_DIR)",
    )
    store.add_argument(
        "--memory",
        action="store_true",
        help="a throwaway in-memory embedded store: nothing is kept (env EXOSPHERE_MEMORY=1)",
    )
    args = parser.parse_args(argv)
    if args.dev:
        os.environ.setdefault("MODE", "development")
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["exosphere_data_dir"] = args.data_dir
    if args.memory:
        overrides["exosphere_memory"] = True
    try:
        settings, missing = _read_settings(overrides, dev=args.dev)
        settings.refuse_public_secrets()
    except ValidationError as exc:
        parser.exit(2, _explain(exc))
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    if problem := _store_conflict(settings):
        parser.exit(2, f"error: {problem}\n")
    configure_logging(settings.log_level, settings.log_format)
    if settings.development:
        log.warning("development_mode", message=DEVELOPMENT_WARNING)
    _stop_on_sigterm()
    status = StoreStatus()
    try:
        with contextlib.ExitStack() as stack:
            _start_and_serve(parser, stack, args, settings, overrides, missing, status)
    except _Terminated:
        # Everything is stopped: end as killed by SIGTERM, as uvicorn itself would.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
    except KeyboardInterrupt:  # Ctrl-C before uvicorn serves (uvicorn handles it after)
        parser.exit(130)
    if status.problem is not None:
        _exit_store_lost()


def _exit_store_lost() -> None:
    """Exit with STORE_LOST_EXIT_CODE now that the server has stopped and released the data
    directory. At once (`os._exit`): the database client's worker threads may still be waiting for
    the dead engine (its 30 s server-selection timeout), and a normal exit would wait for them.
    Nothing is left to save."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(STORE_LOST_EXIT_CODE)


def _start_and_serve(
    parser: argparse.ArgumentParser,
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    settings: Settings,
    overrides: dict[str, Any],
    missing: list[str],
    status: StoreStatus,
) -> None:
    """Listen, open the store, check the key, serve; a problem exits with code 2 and one line.
    Everything started is stopped by `stack`."""
    try:
        listener = stack.enter_context(_listen(args.host, args.port))
    except OSError as exc:
        parser.exit(2, f"error: {_cannot_listen(args.host, args.port, exc)}\n")
    try:
        settings = _open_store(stack, settings, overrides, missing, status)
    except StoreError as exc:
        parser.exit(2, f"error: {exc}\n")
    problem = asyncio.run(check_secrets_key(settings))
    if problem:
        parser.exit(2, f"error: {problem}\n")
    if settings.development:
        base = f"http://{args.host}:{args.port}"
        print(f"Dashboard: {base}/ui (log in with the key)   API reference: {base}/docs", flush=True)  # noqa: T201
    _serve(settings, args.host, args.port, listener, status)


class _Terminated(Exception):
    """SIGTERM as an exception, so that the embedded store is stopped on the way out."""


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    raise _Terminated


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into `_Terminated`.

    uvicorn handles SIGTERM while it serves, then re-raises it once it has shut down: with the
    default disposition the process would die there, before it stops the engine (which its
    parent-death signal would then stop, unordered). Only the main thread can set handlers.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


class _Server(uvicorn.Server):
    """uvicorn's server, which also answers every open long-poll (empty) as soon as a stop is
    asked for, so that runtimes re-poll elsewhere and the shutdown does not wait for them."""

    def __init__(self, config: uvicorn.Config, work: WorkSignal) -> None:
        super().__init__(config)
        self._work = work

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._work.close()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets and self.started:  # uvicorn says where it listens only on sockets it bound
            self._log_started_message(sockets)


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before anything else starts: a port in use stops the
    server at once with one line, not after "startup complete" (and nothing else can take the
    port between this check and serving: uvicorn serves on this very socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=2048)
    listener.set_inheritable(True)
    return listener


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).lower()
    hint = "choose another port with --port (PORT=... for make run)"
    if exc.errno == errno.EADDRINUSE:
        hint = f"another server is using it? {hint}"
    return f"cannot listen on {host}:{port}: {reason} ({hint})"


def _serve(settings: Settings, host: str, port: int, listener: socket.socket, status: StoreStatus) -> None:
    app = create_app(settings, store_status=status)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through configure_logging's handler: same format
        access_log=False,  # one `http_request` line per request instead (observability.RequestLog)
        # Open requests get this long to finish; long-polls are answered at once (see _Server).
        timeout_graceful_shutdown=3,
    )
    server = _Server(config, app.state.context.work)
    # The store is gone: stop as on SIGTERM, but without the signal (uvicorn would re-raise it at
    # the end, and `main` would end as killed); requests meanwhile are answered 503 (StoreGuard).
    status.when_lost(lambda: setattr(server, "should_exit", True))
    server.run(sockets=[listener])


if __name__ == "__main__":
    main()
