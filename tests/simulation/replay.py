"""Replay one schedule and print what each operation did and the violations found:

    python -m tests.simulation.replay '<scenario> <choices or -> <crash op@call or ->'

(the line a failure prints). Exits 1 when the schedule breaks an invariant.
"""

from __future__ import annotations

import asyncio
import sys

from tests.simulation import harness
from tests.simulation.store_gate import gated_store


def main(line: str) -> int:
    scenario, choices, crash = harness.parse_replay(line)
    with gated_store():
        outcome = asyncio.run(harness.simulate(scenario, choices, crash=crash))
    print("\n".join(f"{op}: {label}" for op, label in outcome.calls))
    if outcome.violations:
        print(outcome.report())
        return 1
    print(f"{scenario}: no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:])))
