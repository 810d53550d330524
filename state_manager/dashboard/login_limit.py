"""How many wrong API keys one client address may try at the dashboard's login.

The API key is the only secret between the internet and the dashboard, and guessing it costs an
attacker one POST per guess. So each address gets `max_failures` wrong keys per window; after
that its logins answer 429 without the key being checked, until the window ends.

The window is fixed, not sliding: it starts at an address's first failure and lasts
`window_seconds`; when it has passed, the next failure starts a new one. A blocked attempt is not
counted (the wait it is told stays true), and a successful login forgets the address's failures
(typing mistakes of the key's holder do not add up over the day).

Kept in memory by each process: with several replicas the limit is per replica. At most
`max_addresses` addresses are remembered; past that the oldest window is dropped (windows all
last as long, so those that have ended go first), so an attack from many addresses costs a
bounded amount of memory, and gains nothing that its many addresses did not give it already.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_ADDRESSES = 10_000


@dataclass
class _Window:
    started: float
    failures: int = 0


class LoginLimiter:
    """Wrong keys per client address, in fixed windows (see above). Used from the event loop
    only, without an await between a check and its count: no lock needed."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self.clock = clock
        # Oldest window first: a window is inserted when it starts and never moved (a new window
        # of the same address is a new entry), so the ended ones are at the front.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds `address` must wait before its next login is checked; None: go ahead."""
        window = self._current(address)
        if window is None or window.failures < self.max_failures:
            return None
        return max(1, math.ceil(window.started + self.window_seconds - self.clock()))

    def failed(self, address: str) -> bool:
        """Count a wrong key from `address`; True when this failure used up its allowance."""
        window = self._current(address) or self._start(address)
        window.failures += 1
        return window.failures == self.max_failures

    def succeeded(self, address: str) -> None:
        """Forget the failures of `address`: its holder of the key got in."""
        self._windows.pop(client_key(address), None)

    def __len__(self) -> int:
        return len(self._windows)

    def _current(self, address: str) -> _Window | None:
        key = client_key(address)
        window = self._windows.get(key)
        if window is not None and self._ended(window):
            del self._windows[key]
            return None
        return window

    def _start(self, address: str) -> _Window:
        while len(self._windows) >= self.max_addresses:
            self._windows.popitem(last=False)  # the oldest: ended windows go before any other
        window = self._windows[client_key(address)] = _Window(started=self.clock())
        return window

    def _ended(self, window: _Window) -> bool:
        return self.clock() >= window.started + self.window_seconds


def client_key(address: str) -> str:
    """What is counted: an IPv4 address as it is, an IPv6 address by its /64 network (one
    host or site is usually given a whole /64, so counting single addresses would let it
    rotate through billions of them). Anything else (a test client's name) as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:1.2.3.4 is 1.2.3.4
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
