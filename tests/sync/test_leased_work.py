"""Pure unit tests of the leased claim -> work -> write pipeline sync and enrichment share
(shared/services/leased_work.py): an in-process fake repository and fake work, a fake clock, no stack."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from shared import errors
from shared.services import leased_work
from shared.services.leased_work import LocationRun, record_with_retries, run_locations, work_leased_rows


@dataclass
class Summary:
    location_id: str = "loc"
    stopped_by_deadline: bool = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRows:
    """A due list: claim(limit=n) leases the next n rows (each row at most once, like SKIP LOCKED on a lease)."""

    def __init__(self, count: int, clock: Clock | None = None, seconds_per_claim: float = 0.0) -> None:
        self.due = [{"id": str(i)} for i in range(count)]
        self.claims: list[int] = []
        self.clock = clock
        self.seconds_per_claim = seconds_per_claim

    def claim(self, *, limit: int) -> list[dict]:
        self.claims.append(limit)
        rows, self.due = self.due[:limit], self.due[limit:]
        if self.clock is not None:
            self.clock.now += self.seconds_per_claim
        return rows


def run_pipeline(rows: FakeRows, *, workers: int = 3, lease_seconds: float = 60, limit: int | None = None,
                 deadline: float = float("inf"), clock=None, work=None, run: LocationRun | None = None):
    run = run or LocationRun(integration={}, summary=Summary())
    worked: list[str] = []
    written: list[list] = []
    in_flight = {"now": 0, "most": 0}

    async def default_work(row, work_by):
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        await asyncio.sleep(0)
        worked.append(row["id"])
        in_flight["now"] -= 1
        return row["id"]

    async def write(batch):
        written.append(list(batch))

    asyncio.run(work_leased_rows(run, claim=rows.claim, work=work or default_work, write=write, workers=workers,
                                 lease_seconds=lease_seconds, limit=limit, deadline=deadline,
                                 clock=clock or Clock()))
    return run, worked, written, in_flight["most"]


def test_every_claimed_row_is_worked_once_and_written_once():
    rows = FakeRows(25)
    run, worked, written, most_in_flight = run_pipeline(rows, workers=3)
    ids = [str(i) for i in range(25)]
    assert sorted(worked, key=int) == ids
    assert sorted((answer for batch in written for answer in batch), key=int) == ids
    assert all(batch for batch in written)  # no empty write
    assert rows.claims[:-1] == [6] * 5 and rows.due == []  # chunks of 2 x workers until the list is empty
    assert 1 < most_in_flight <= 3
    assert not run.summary.stopped_by_deadline and run.abort_reason is None


def test_limit_caps_what_is_claimed():
    rows = FakeRows(25)
    _, worked, written, _ = run_pipeline(rows, workers=2, limit=7)
    assert rows.claims == [4, 3]
    assert len(worked) == 7 and sum(len(batch) for batch in written) == 7
    assert len(rows.due) == 18


def test_the_deadline_stops_claiming_and_what_is_claimed_is_still_written():
    clock = Clock()
    rows = FakeRows(100, clock, seconds_per_claim=10)  # every claim takes 10 s of the budget
    run, worked, written, _ = run_pipeline(rows, workers=1, clock=clock, deadline=clock.now + 25)
    assert rows.claims == [2, 2, 2]  # at 0 s, 10 s and 20 s; none at 30 s
    assert run.summary.stopped_by_deadline
    assert len(worked) == 6 and sum(len(batch) for batch in written) == 6
    assert len(rows.due) == 94


def test_rows_past_their_work_by_time_are_released_not_worked():
    clock = Clock()
    rows = FakeRows(4)  # one chunk (2 workers: chunks of 4), claimed at 1000
    seen_work_by: list[float] = []

    async def work(row, work_by):  # the services' rule: at or past work_by the row is released
        seen_work_by.append(work_by)
        if clock() >= work_by:
            return ("released", row["id"])
        clock.now += 30  # a slow GHL request
        return ("worked", row["id"])

    _, _, written, _ = run_pipeline(rows, workers=2, lease_seconds=60, clock=clock, work=work)
    # work_by = claim time + lease - min(15, lease / 4) = 1000 + 60 - 15
    assert seen_work_by == [1045.0] * 4
    outcomes = sorted(answer for batch in written for answer in batch)
    assert outcomes == [("released", "2"), ("released", "3"), ("worked", "0"), ("worked", "1")]


def test_a_stopped_run_claims_no_more_and_writes_what_it_claimed():
    rows = FakeRows(50)
    run = LocationRun(integration={}, summary=Summary())

    async def work(row, work_by):
        if row["id"] == "1":
            run.stop("GHL refused the location's token")
            run.stop("a later reason does not replace the first")
        return row["id"]

    run, _, written, _ = run_pipeline(rows, workers=2, work=work, run=run)
    assert run.abort_reason == "GHL refused the location's token"
    assert len(rows.claims) <= 2  # the chunk being claimed when it stopped, at most
    answers = [answer for batch in written for answer in batch]
    assert len(answers) == len(set(answers)) == 50 - len(rows.due) >= 4


def test_a_failed_claim_is_reported_to_the_run_and_the_pipeline_ends():
    class Run(LocationRun):
        def claim_failed(self, exc):
            self.stop(f"claiming rows failed: {exc.message}")

    def claim(*, limit):
        raise errors.TransientError("database unavailable")

    run = Run(integration={}, summary=Summary())
    written: list = []

    async def write(batch):
        written.extend(batch)

    asyncio.run(asyncio.wait_for(work_leased_rows(
        run, claim=claim, work=None, write=write, workers=3, lease_seconds=60, limit=None,
        deadline=float("inf"), clock=Clock()), timeout=5))
    assert run.abort_reason == "claiming rows failed: database unavailable"
    assert written == []


def test_consecutive_transient_failures_stop_the_run():
    run = LocationRun(integration={}, summary=Summary())
    for n in range(leased_work.MAX_CONSECUTIVE_TRANSIENT_FAILURES - 1):
        run.transient_failure("pushes", f"503 #{n}")
    assert run.abort_reason is None
    run.transient_failure("pushes", "503 last")
    assert run.abort_reason == "GHL failed 10 pushes in a row (last: 503 last); stopped early"


def test_record_with_retries_retries_transient_errors_only():
    calls: list[int] = []

    def flaky():
        calls.append(1)
        if len(calls) < 2:
            raise errors.TransientError("connection reset")
        return 7

    assert asyncio.run(record_with_retries(flaky)) == 7 and len(calls) == 2

    def refused():
        calls.append(1)
        raise errors.BadRequest("bad results")

    calls.clear()
    with pytest.raises(errors.BadRequest):
        asyncio.run(record_with_retries(refused))
    assert len(calls) == 1

    def down():
        calls.append(1)
        raise errors.TransientError("down")

    calls.clear()
    with pytest.raises(errors.TransientError):
        asyncio.run(record_with_retries(down))
    assert len(calls) == leased_work.WRITE_ATTEMPTS


def test_run_locations_runs_every_location_under_one_deadline():
    clock = Clock()
    asked: list = []

    def list_integrations(location_id):
        asked.append(location_id)
        return [] if location_id == "nowhere" else [{"location_id": "a"}, {"location_id": "b"}]

    async def run_location(integration, deadline):
        return integration["location_id"], deadline

    def run(**kwargs):
        options = {"location_id": None, "limit": None, "deadline": None, "budget_seconds": 50, "clock": clock,
                   "unknown_location": "no integration"} | kwargs
        return asyncio.run(run_locations(list_integrations, run_location, **options))

    assert run() == [("a", 1050.0), ("b", 1050.0)]
    assert run(deadline=1010.0) == [("a", 1010.0), ("b", 1010.0)]
    with pytest.raises(errors.UnknownLocation, match="no integration"):
        run(location_id="nowhere")
    with pytest.raises(errors.BadRequest):
        run(limit=0)
    assert asked == [None, None, "nowhere"]  # a bad limit is refused before any database call


def test_record_answers_counts_and_logs_what_could_not_be_written():
    class Log:
        def __init__(self):
            self.lines = []

        def error(self, message, extra):
            self.lines.append((message, extra["fields"]))

    def refused():
        raise errors.BadRequest("bad results")

    run, log = LocationRun(integration={}, summary=Summary()), Log()
    assert asyncio.run(leased_work.record_answers(run, lambda: 3, 4, log=log, failure="not recorded")) == 3
    assert run.write_errors == 0 and log.lines == []
    assert asyncio.run(leased_work.record_answers(run, refused, 4, log=log, failure="not recorded")) is None
    assert run.write_errors == 4
    assert log.lines == [("not recorded", {"location_id": "loc", "results": 4, "reason": "bad results"})]
