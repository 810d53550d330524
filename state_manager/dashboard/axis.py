"""The time axis of the timelines: one unit for the whole axis, chosen by its span (ms under
1 s, s up to 4 min, min up to 4 h, h up to 4 days, then d), and round ticks in that unit."""

from __future__ import annotations

from dataclasses import dataclass

# (unit, ms per unit, the longest span labelled in it): past 4 units of the next one, a tick
# step is a whole number of that unit.
UNITS = (
    ("ms", 1, 999),
    ("s", 1_000, 240_000),
    ("min", 60_000, 4 * 3_600_000),
    ("h", 3_600_000, 4 * 86_400_000),
    ("d", 86_400_000, None),
)
# Tick steps a reader can add up: 1, 2, 5 in each decade of ms, and the clock's own steps.
STEPS_MS = (
    *(m * 10**e for e in range(4) for m in (1, 2, 5)),  # 1 ms ... 5 s
    10_000, 15_000, 30_000,
    60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
    3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000,
    86_400_000, 2 * 86_400_000, 7 * 86_400_000,
)  # fmt: skip
MAX_TICKS = 8


@dataclass(frozen=True)
class Axis:
    start: int  # epoch ms at the left end (offset 0)
    span: int  # ms from the left end to the right end: a whole number of steps
    unit: str  # ms | s | min | h | d
    scale: int  # ms per unit
    step: int  # ms between ticks

    @property
    def ticks(self) -> list[int]:
        """The offsets (ms from `start`) that carry a tick, both ends included."""
        return list(range(0, self.span + 1, self.step))

    def label(self, offset: int) -> str:
        """A tick's text: `0`, then `+1.5 s`, `+200 ms`, `+3 min`, in the axis's unit."""
        if offset == 0:
            return "0"
        text = f"{offset / self.scale:.{_decimals(self.step, self.scale)}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return f"+{text} {self.unit}"


def _decimals(step: int, scale: int) -> int:
    """How many decimals show a multiple of `step` exactly in units of `scale` ms (at most 2)."""
    for decimals in (0, 1):
        if (step * 10**decimals) % scale == 0:
            return decimals
    return 2


def unit_for(span: int) -> tuple[str, int]:
    """The unit an axis of `span` ms is labelled in, and its size in ms."""
    for unit, scale, longest in UNITS:
        if longest is None or span <= longest:
            return unit, scale
    raise AssertionError("unreachable: the last unit has no bound")


def time_axis(start: int, end: int, max_ticks: int = MAX_TICKS) -> Axis:
    """An axis from `start` that reaches `end` in at most `max_ticks` round steps."""
    span = max(end - start, 1)
    step = next((s for s in STEPS_MS if span / s <= max_ticks), None)
    if step is None:  # longer than 8 weeks: whole weeks
        step = -(-span // (max_ticks * STEPS_MS[-1])) * STEPS_MS[-1]
    unit, scale = unit_for(span)
    return Axis(start=start, span=-(-span // step) * step, unit=unit, scale=scale, step=step)
