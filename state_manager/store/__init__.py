"""The embedded store: the database engine `python -m state_manager` runs when MONGO_URI is unset.

`embedded` starts, supervises and stops the engine (nx-27017, the MongoDB wire protocol on
SQLite) as a child process, and locks its data directory; `status` is how the server learns that
the engine is gone; `keys` keeps the `--dev` keys in that directory.
See docs/decisions/0010-embedded-store.md.
"""

from state_manager.store.embedded import (
    DataDir,
    DataDirInUse,
    Engine,
    StoreError,
    ensure_data_dir,
    open_data_dir,
    remove_stale_memory_dirs,
    run_engine,
    temporary_store,
)
from state_manager.store.status import StoreStatus

__all__ = [
    "DataDir",
    "DataDirInUse",
    "Engine",
    "StoreError",
    "StoreStatus",
    "ensure_data_dir",
    "open_data_dir",
    "remove_stale_memory_dirs",
    "run_engine",
    "temporary_store",
]
