"""`python -m state_manager [--host H] [--port P] [--dev]`: settings -> uvicorn.

`--dev` (what `make run` uses) is for trying things out on one machine: when no key is set it
generates an API key and an encryption key for this process and prints the API key.

Before serving, it refuses (exit code 2, a message naming the variable) bad settings and an
encryption key that cannot decrypt the secrets already stored.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets

import structlog
import uvicorn
from pydantic import ValidationError

from state_manager.app import create_app
from state_manager.config import Settings
from state_manager.observability import configure_logging
from state_manager.services.startup import check_secrets_key

log = structlog.get_logger("state_manager")

DEVELOPMENT_WARNING = (
    "MODE=development: the published example keys are accepted."
    " For trying things out only: never use development mode in production."
)


def _dev_defaults() -> None:
    os.environ.setdefault("MODE", "development")
    if not os.environ.get("STATE_MANAGER_SECRET"):
        os.environ["STATE_MANAGER_SECRET"] = "dev-" + secrets.token_urlsafe(16)
        print(f"Development API key (x-api-key): {os.environ['STATE_MANAGER_SECRET']}", flush=True)  # noqa: T201
    if not os.environ.get("SECRETS_ENCRYPTION_KEY"):
        os.environ["SECRETS_ENCRYPTION_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()


def _explain(exc: ValidationError) -> str:
    """One line per bad setting, named by its environment variable (never its value)."""
    lines = []
    for error in exc.errors(include_input=False):
        variable = str(error["loc"][0]).upper() if error["loc"] else "settings"
        lines.append(f"  {variable}: {error['msg']}")
    hint = "Set them in the environment or in .env (see .env.example), or use --dev to try things out."
    return "error: invalid settings\n" + "\n".join(lines) + "\n" + hint + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m state_manager", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dev", action="store_true", help="development mode: generate missing keys")
    args = parser.parse_args(argv)
    if args.dev:
        _dev_defaults()
    try:
        settings = Settings()  # type: ignore[call-arg,unused-ignore]  # from the environment
        settings.refuse_public_secrets()
    except ValidationError as exc:
        parser.exit(2, _explain(exc))
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    configure_logging(settings.log_level)
    if settings.development:
        log.warning("development_mode", message=DEVELOPMENT_WARNING)
    problem = asyncio.run(check_secrets_key(settings))
    if problem:
        parser.exit(2, f"error: {problem}\n")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # Long-polling claims may be open: don't wait for them on shutdown, they are re-polled.
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
