"""Development keys kept in the data directory, so that `--dev` prints the same API key every time.

`dev-keys.json` (mode 0600) holds an API key and a secrets-encryption key, generated once, the
first time `python -m state_manager --dev` needs them. Keys set in the environment (or `.env`)
win over the stored ones; a throwaway store (`--memory`) gets keys for that process only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from state_manager.config import decode_encryption_key
from state_manager.store.embedded import StoreError

KEYS_FILE = "dev-keys.json"


@dataclass(frozen=True)
class DevKeys:
    """`path` is where they are kept, or None when they live as long as this process."""

    state_manager_secret: str
    secrets_encryption_key: str
    path: Path | None = None


def new_dev_keys() -> DevKeys:
    return DevKeys(
        state_manager_secret="dev-" + secrets.token_urlsafe(16),
        secrets_encryption_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
    )


def load_or_create_dev_keys(directory: Path) -> DevKeys:
    """The keys stored in `directory`, generated and stored (mode 0600) the first time."""
    path = directory / KEYS_FILE
    if path.exists():
        return _read(path)
    keys = new_dev_keys()
    content = json.dumps(
        {
            "state_manager_secret": keys.state_manager_secret,
            "secrets_encryption_key": keys.secrets_encryption_key,
        },
        indent=2,
    )
    draft = directory / f".{KEYS_FILE}.{os.getpid()}.tmp"
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(content + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(draft, path)  # complete or absent, and never replaces keys written meanwhile
        except FileExistsError:
            return _read(path)
    except OSError as exc:
        raise StoreError(
            f"cannot store the development keys in {path} ({exc.strerror or exc}): make the data"
            " directory writable, or choose another with --data-dir DIR or EXOSPHERE_DATA_DIR"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            draft.unlink()
    return DevKeys(keys.state_manager_secret, keys.secrets_encryption_key, path)


def _read(path: Path) -> DevKeys:
    remedy = (
        f"fix or delete {path} (deleting it generates new keys: secrets stored with the old"
        " encryption key then cannot be decrypted)"
    )
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:  # readable by others: tighten it
            path.chmod(0o600)
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read the development keys in {path} ({exc}): {remedy}") from exc
    try:
        api_key, encryption_key = stored["state_manager_secret"], stored["secrets_encryption_key"]
        if not isinstance(api_key, str) or not api_key.strip() or not isinstance(encryption_key, str):
            raise ValueError("a key is not a non-empty string")
        decode_encryption_key(encryption_key)
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"the development keys in {path} are not valid ({exc}): {remedy}") from exc
    return DevKeys(api_key, encryption_key, path)
