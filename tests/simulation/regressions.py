"""Schedules that broke an invariant, kept and replayed on every run of the tier: each is
(scenario, choices at the decision points, crash point), as printed in a failure's replay
line. See README.md (FINDINGS) for what each found: 1-6 on commit 2a3ceea, 7-8 on the first
version of the stored progress (decision 0020) before they were fixed, 9 on 3a9a1f4 (found by an
end-to-end test in CI, then by the explorer at two preemptions), 10 on 909b2b9 and on the first
version of the joins' anchor tallies (decision 0020) before `join_epoch`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Regression:
    race: str  # what it found
    replay: str  # "<scenario> <choices or -> <crash op@call or ->"


REGRESSIONS: tuple[Regression, ...] = (
    Regression(
        "1a: a repaired fan-in join runs on the list collected before the repair",
        "fan_in_repair_then_join_retry - -",
    ),
    Regression(
        "1b: retry-failed alone leaves the run FAILED with every branch green",
        "fan_in_retry_failed - -",
    ),
    Regression(
        "1c: under ALL_DONE a repaired branch is left out of the join that already ran",
        "fan_in_all_done_repair - -",
    ),
    Regression(
        "2: a cancel racing the run's last report turns SUCCESS into CANCELLED and ends it twice",
        "chain_last_report_vs_cancel 1,1,0,0,0,0,0,0,0,0,0,0,0,0 -",
    ),
    Regression(
        "3: a state written after a cancel's sweep is not flagged: a manual retry starts work",
        "chain_report_vs_cancel 0,0,0,1,1,1,1,1,1,1 -",
    ),
    Regression(
        "4: SEED states/create reopens before writing: the run stays SUCCESS with an ERRORED state",
        "seed_create_vs_last_report 1,1,1,1,0,0,0,0,0,0,0,0,0,0,0 -",
    ),
    Regression(
        "5: a crash between a manual retry's status write and the reopen leaves the run FAILED",
        "chain_manual_retry - 0@3",
    ),
    Regression(
        "6: SEED states/create into a cancelled run creates states that workers claim and run",
        "seed_create_vs_cancel - -",
    ),
    Regression(
        "7: a crash between counting states/create's batch and reopening the ended run left it "
        "ended with its old counts",
        "seed_create_vs_last_report 0,0,0,0,0,0,0 1@6",
    ),
    Regression(
        "8: a crash in retry-failed after its branch retries but before the joins above were "
        "superseded left the run FAILED with every branch green",
        "fan_in_retry_failed 0,0,0,0,0,0 0@7",
    ),
    Regression(
        "9: a join probed the states going, then the retries not yet written: a branch retried "
        "between the two reads was in neither, and the join ran on three of four squares",
        "fan_in_auto_retry_vs_last_branch 0,0,0,1,1,1,0,0,0,0,0 -",
    ),
    Regression(
        "10: the last branch found nothing going, then an operator retried a failed branch before "
        "the join was written: the join ran without the repaired branch, run SUCCESS, total 10 "
        "instead of 14",
        "fan_in_manual_retry_vs_last_branch 0,0,0,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1,1,1,1,1 -",
    ),
    Regression(
        "10b: the same race against the anchor's tally: its last arrival's view predates the reopen",
        "fan_in_manual_retry_vs_last_branch 0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1 -",
    ),
)
