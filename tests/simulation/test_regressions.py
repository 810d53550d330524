"""The races the simulator found, replayed on every run. On commit 2a3ceea these fail (that is
what they are for); each passes once its race is fixed."""

from __future__ import annotations

import pytest

from tests.simulation import harness
from tests.simulation.regressions import REGRESSIONS, Regression


@pytest.mark.parametrize("case", REGRESSIONS, ids=[r.replay.split()[0] for r in REGRESSIONS])
async def test_regression(case: Regression) -> None:
    scenario, choices, crash = harness.parse_replay(case.replay)

    outcome = await harness.simulate(scenario, choices, crash=crash)

    assert not outcome.violations, f"{case.race}\n{outcome.report()}"
