"""What every use case needs besides the database: settings, the secret cipher, the work signal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from state_manager.config import Settings
from state_manager.crypto import SecretCipher


class WorkSignal:
    """Wakes long-polling enqueue calls of this process when new work appears in a namespace.

    Every notify bumps the namespace's generation. A poll notes the generation before it
    queries and passes it to `wait`, which returns at once if a notify came in between: work
    that appears while the poll is querying is never missed. Other replicas' work is found by
    the long-poll's periodic re-check; this only makes the common single-process case instant.
    """

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing = False

    def close(self) -> None:
        """The server is stopping: end every wait now and every later one at once. Safe to call
        from a signal handler or another thread."""
        self.closing = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for namespace in list(self._events):
            self.notify(namespace)

    def generation(self, namespace: str) -> int:
        return self._generations.get(namespace, 0)

    def notify(self, namespace: str) -> None:
        self._generations[namespace] = self.generation(namespace) + 1
        event = self._events.pop(namespace, None)
        if event is not None:
            event.set()

    async def wait(self, namespace: str, seconds: float, seen: int) -> bool:
        """Wait up to `seconds` for a notify of `namespace` after generation `seen`; whether one
        came (False: the time ran out)."""
        if self.closing or self.generation(namespace) != seen:
            return True
        self._loop = asyncio.get_running_loop()
        event = self._events.setdefault(namespace, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True


class TemplateCache:
    """The newest graph templates this process has read, by (namespace, name).

    Every upsert bumps a template's version and every state records the version it was created
    under, so a cached template at least as new as the state's is the one to use: reports read
    no graph. A state from a newer version (upserted through another replica) makes it re-read.
    """

    def __init__(self, size: int = 256) -> None:
        self._templates: dict[tuple[str, str], Any] = {}
        self._size = size

    def get(self, namespace: str, name: str, version: int) -> Any:
        cached = self._templates.get((namespace, name))
        if cached is not None and version > 0 and cached.version >= version:
            return cached
        return None

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted graph (a graph made again under its name starts at version 1)."""
        self._templates.pop((namespace, name), None)

    def put(self, template: Any) -> None:
        key = (template.namespace, template.name)
        current = self._templates.pop(key, None)
        if current is not None and current.version > template.version:
            template = current
        elif current is None and len(self._templates) >= self._size:
            self._templates.pop(next(iter(self._templates)))
        self._templates[key] = template


@dataclass(frozen=True)
class Final:
    """A claimed state whose report, with one output, creates nothing: the graph it was judged
    on, and the effect such a report owes ("joins" or "tally")."""

    namespace: str
    graph: str
    version: int
    effect: str


@dataclass
class AppContext:
    settings: Settings
    cipher: SecretCipher
    work: WorkSignal = field(default_factory=WorkSignal)
    templates: TemplateCache = field(default_factory=TemplateCache)
    # (namespace, node) -> (tuned lease in ms or None, when it was read: time.monotonic())
    tuned_leases: dict[tuple[str, str], tuple[int | None, float]] = field(default_factory=dict)
    # (namespace, node) -> (running times not written yet, when they were last written)
    lease_samples: dict[tuple[str, str], tuple[list[int], float]] = field(default_factory=dict)
    # (namespace, nodes) -> when this process last made their due delayed states claimable.
    promoted: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)
    # (namespace, node) -> when this process last recorded a runtime's poll for it (epoch ms).
    polls_recorded: dict[tuple[str, str], int] = field(default_factory=dict)
    # State id -> what a report with one output leaves owed, for states claimed here whose node
    # has no next node (services/states.py: such a report is written SUCCESS at once).
    finals: dict[str, Final] = field(default_factory=dict)
    # Scoped API keys read lately: key id -> (its document, or None if unknown; when it was read,
    # time.monotonic()). Kept for KEY_CACHE_SECONDS, so a revoke reaches every replica in time.
    api_keys: dict[str, tuple[Any, float]] = field(default_factory=dict)

    @property
    def lease_ms(self) -> int:
        return int(self.settings.state_lease_seconds * 1000)

    @property
    def grace_ms(self) -> int:
        return int(self.settings.recovery_grace_seconds * 1000)
