"""What every use case needs besides the database: settings, the secret cipher, the work signal."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from state_manager.config import Settings
from state_manager.crypto import SecretCipher


class WorkSignal:
    """Wakes long-polling enqueue calls of this process when new work appears in a namespace.

    Other replicas' work is found by the long-poll's periodic re-check; this only makes the
    common single-process case instant.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, namespace: str) -> None:
        event = self._events.pop(namespace, None)
        if event is not None:
            event.set()

    async def wait(self, namespace: str, seconds: float) -> None:
        event = self._events.setdefault(namespace, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


@dataclass
class AppContext:
    settings: Settings
    cipher: SecretCipher
    work: WorkSignal = field(default_factory=WorkSignal)

    @property
    def lease_ms(self) -> int:
        return int(self.settings.state_lease_seconds * 1000)

    @property
    def grace_ms(self) -> int:
        return int(self.settings.recovery_grace_seconds * 1000)
