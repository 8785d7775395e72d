"""The pull at the rate limit: contacts and calls at once (one limiter per location), every open batch at once
(the scheduler's process), the next page fetched while the last is staged, lists ended by GHL's `total`
without an extra request, a short list recorded as a warning; every record staged once and counters true
after a crash at any point."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from shared.services.import_batches import PAGES_AHEAD, advance_batch, process_open_batches
from tests.import_batches.conftest import assert_counters_true, far_deadline, pull

SEARCH = "POST /contacts/search"
EXPORT = "GET /conversations/messages/export"


class Recorder:
    """Wraps the real GHL factory and repository: when each GHL request and each stage rpc ran (instrumentation
    only: the requests go to the sandbox, the rpcs to PostgREST)."""

    def __init__(self, ghl_factory, repo):
        self._factory, self._repo = ghl_factory, repo
        self.requests: list[dict] = []  # {location, kind, start, end, status}
        self.stages: list[dict] = []  # {batch_id, kind, start, end}

    def factory(self, location_id: str, token: str):
        client = self._factory(location_id, token)

        send = client._send

        async def timed_send(method, url, **kwargs):  # every HTTP exchange of the client, with its times
            kind = "contacts" if urlsplit(url).path.startswith("/contacts") else "calls"
            entry = {"location": location_id, "kind": kind, "start": time.monotonic()}
            answer = await send(method, url, **kwargs)
            entry.update(end=time.monotonic(), status=answer.status_code)
            self.requests.append(entry)
            return answer

        client._send = timed_send
        return client

    def __getattr__(self, name):
        return getattr(self._repo, name)

    def stage_page(self, batch_id, kind, *args, **kwargs):
        start = time.monotonic()
        try:
            return self._repo.stage_page(batch_id, kind, *args, **kwargs)
        finally:
            self.stages.append({"batch_id": batch_id, "kind": kind, "start": start, "end": time.monotonic()})


def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def distinct_staged(db, batch_id) -> tuple[int, int]:
    row = db.execute("SELECT count(*) AS n, count(DISTINCT (record_kind, external_id)) AS d FROM ghl_import_staging "
                     "WHERE batch_id = %s", (batch_id,)).fetchone()
    return row["n"], row["d"]


def test_three_locations_and_both_streams_pull_at_once_each_record_staged_once(import_location, ghl_sandbox, db,
                                                                                repo, ghl_factory, settings):
    locations = []
    for contacts, calls in ((250, 130), (300, 90), (120, 200)):
        location, _ = import_location("internal", latency_ms=40)
        seeded = ghl_sandbox.seed(location.id, contacts=contacts, calls=calls)
        locations.append((location, contacts, seeded["calls"] + seeded["voicemails"], seeded["calls"]))
    batches = {repo.create_batch(location.id, ["contacts", "calls"], None, None)["id"]: (location, c, m, k)
               for location, c, m, k in locations}

    recorder = Recorder(ghl_factory, repo)
    runs = process_open_batches(recorder, recorder.factory, settings, deadline=far_deadline())

    ours = {run.batch["id"]: run for run in runs if run.batch["id"] in batches}
    assert set(ours) == set(batches)
    for batch_id, (location, contacts, messages, calls) in batches.items():
        run = ours[batch_id]
        assert run.batch["status"] == "completed", run.to_dict()
        assert run.warnings == [] and run.batch["warnings"] == []
        counts = assert_counters_true(db, batch_id)
        assert counts["total_records"] == counts["processed_records"] == contacts + calls
        assert distinct_staged(db, batch_id) == (contacts + calls, contacts + calls)
        # ended by `total`: one request per page, never an extra one for an empty page
        stats = ghl_sandbox.stats(location.id)["requests"]
        assert stats[SEARCH] == -(-contacts // 100) and stats[EXPORT] == -(-messages // 100)

    mine = [r for r in recorder.requests if any(r["location"] == loc.id for loc, *_ in locations)]
    assert all(r["status"] == 200 for r in mine)
    # both streams of a location had requests open at the same moment ...
    for location, *_ in locations:
        contacts_requests = [r for r in mine if r["location"] == location.id and r["kind"] == "contacts"]
        calls_requests = [r for r in mine if r["location"] == location.id and r["kind"] == "calls"]
        assert any(overlaps(a, b) for a in contacts_requests for b in calls_requests)
    # ... every location was pulled while the others were (not one after another) ...
    spans = {loc.id: (min(r["start"] for r in mine if r["location"] == loc.id),
                      max(r["end"] for r in mine if r["location"] == loc.id)) for loc, *_ in locations}
    assert max(start for start, _ in spans.values()) < min(end for _, end in spans.values())
    # ... and a stream's next page was on its way while its previous page was being staged
    location_of = {batch_id: location.id for batch_id, (location, *_) in batches.items()}
    assert any(r["kind"] == s["kind"] and r["location"] == location_of.get(s["batch_id"]) and overlaps(r, s)
               for s in recorder.stages for r in mine)


def test_a_429_with_retry_after_on_the_calls_stream_pauses_the_contacts_stream_too(import_location, ghl_sandbox,
                                                                                   db, repo, ghl_factory, settings):
    location, _ = import_location("internal", latency_ms=30)
    seeded = ghl_sandbox.seed(location.id, contacts=900, calls=150)
    ghl_sandbox.set_faults(location.id, rate_limit_count=1, retry_after_seconds=1.5,
                           only_paths=["/conversations/messages/export"])
    recorder = Recorder(ghl_factory, repo)

    run = pull(recorder, recorder.factory, settings, location.id)

    assert run.batch["status"] == "completed", run.to_dict()
    expected = 900 + seeded["calls"]
    assert distinct_staged(db, run.batch["id"]) == (expected, expected)
    assert assert_counters_true(db, run.batch["id"])["processed_records"] == expected
    limited = [r for r in recorder.requests if r["status"] == 429]
    assert len(limited) == 1 and limited[0]["kind"] == "calls"
    answered = limited[0]["end"]
    # the contacts stream had pages left, but the location's limiter held both streams for Retry-After
    # (a request whose permit was given just before the 429 was read may go out a moment after it)
    later = [r for r in recorder.requests if r["start"] > answered + 0.1]
    assert any(r["kind"] == "contacts" for r in later)
    assert min(r["start"] for r in later) >= answered + 1.4
    stats = ghl_sandbox.stats(location.id)
    assert stats["requests"][SEARCH] == 9 and stats["rate_limited_sent"] == 1


def test_end_of_list_at_an_exact_multiple_of_the_page_size_needs_no_extra_request(import_location, ghl_sandbox, db,
                                                                                  repo, ghl_factory, settings):
    location, _ = import_location("internal")
    ghl_sandbox.seed(location.id, contacts=200, calls=100, voicemail_share=0)

    run = pull(repo, ghl_factory, settings, location.id)

    assert run.batch["status"] == "completed" and run.warnings == [] and run.batch["warnings"] == []
    assert run.batch["total_records"] == 300 and run.pages == 3
    stats = ghl_sandbox.stats(location.id)["requests"]
    assert (stats[SEARCH], stats[EXPORT]) == (2, 1)


def test_a_list_that_ends_before_ghls_total_is_a_warning_on_the_batch(import_location, ghl_sandbox, db, repo,
                                                                       ghl_factory, settings, capsys):
    location, _ = import_location("internal")
    seeded = ghl_sandbox.seed(location.id, contacts=250, calls=120, voicemail_share=0)
    ghl_sandbox.set_faults(location.id, total_extra=5)

    run = pull(repo, ghl_factory, settings, location.id)

    expected = ["contacts: GHL reported 255 records but the list ended after 250",
                "calls: GHL reported 125 records but the list ended after 120"]
    assert sorted(run.warnings) == sorted(expected)
    assert run.batch["status"] == "completed" and sorted(run.batch["warnings"]) == sorted(expected)
    assert sorted(repo.summary(run.batch["id"])["warnings"]) == sorted(expected)
    assert run.batch["total_records"] == 250 + seeded["calls"]
    assert_counters_true(db, run.batch["id"])


class Crash(Exception):
    pass


class CrashingRepo:
    """The real repository; the worker dies at its n-th stage call, before the rpc (the page was fetched, not
    staged) or after it (staged and committed, the answer lost)."""

    def __init__(self, repo, at: int, after_rpc: bool):
        self._repo, self._at, self._after, self.calls = repo, at, after_rpc, 0

    def __getattr__(self, name):
        return getattr(self._repo, name)

    def stage_page(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self._at:
            if self._after:
                self._repo.stage_page(*args, **kwargs)
            raise Crash()
        return self._repo.stage_page(*args, **kwargs)


@pytest.mark.parametrize("after_rpc", [False, True], ids=["between-fetch-and-stage", "mid-stage"])
def test_a_pull_killed_at_any_point_resumes_and_stages_every_record_once(after_rpc, import_location, ghl_sandbox,
                                                                          db, repo, ghl_factory, settings):
    location, _ = import_location("internal", latency_ms=20)
    seeded = ghl_sandbox.seed(location.id, contacts=640, calls=330)
    messages = seeded["calls"] + seeded["voicemails"]
    expected = 640 + seeded["calls"]
    batch_id = repo.create_batch(location.id, ["contacts", "calls"], None, None)["id"]

    for at in (3, 2):  # two kills in a row, at different pages
        with pytest.raises(Crash):
            advance_batch(CrashingRepo(repo, at, after_rpc), ghl_factory, settings, batch_id,
                          deadline=far_deadline())
        counts = assert_counters_true(db, batch_id)
        assert counts["pull_completed_at"] is None
        assert distinct_staged(db, batch_id)[0] == distinct_staged(db, batch_id)[1]

    run = advance_batch(repo, ghl_factory, settings, batch_id, deadline=far_deadline())
    assert run.batch["status"] == "completed", run.to_dict()
    counts = assert_counters_true(db, batch_id)
    assert counts["total_records"] == counts["processed_records"] == expected
    assert distinct_staged(db, batch_id) == (expected, expected)
    state = counts["pull_state"]
    assert state["contacts"]["staged"] + state["calls"]["staged"] == expected
    # a kill loses at most the pages fetched ahead of the stager (per stream), fetched again by the next call
    stats = ghl_sandbox.stats(location.id)["requests"]
    lost_at_most = 2 * (PAGES_AHEAD + 2)
    assert 7 <= stats[SEARCH] <= 7 + lost_at_most
    assert -(-messages // 100) <= stats[EXPORT] <= -(-messages // 100) + lost_at_most


def test_a_slow_and_a_failing_location_do_not_hold_the_others(import_location, ghl_sandbox, db, repo, ghl_factory,
                                                              settings):
    fast, _ = import_location("internal", latency_ms=10)
    slow, _ = import_location("internal", latency_ms=400)
    revoked, _ = import_location("internal", token="revoked-token")
    for location, contacts in ((fast, 120), (slow, 2000), (revoked, 10)):
        ghl_sandbox.seed(location.id, contacts=contacts, calls=30)
    batches = {name: repo.create_batch(location.id, ["contacts", "calls"], None, None)["id"]
               for name, location in (("fast", fast), ("slow", slow), ("revoked", revoked))}

    started = time.monotonic()
    runs = {run.batch["id"]: run for run in process_open_batches(repo, ghl_factory, settings,
                                                                  deadline=started + 4.0)}
    took = time.monotonic() - started

    assert runs[batches["fast"]].batch["status"] == "completed", (took, runs[batches["fast"]].to_dict())
    assert runs[batches["revoked"]].batch["status"] == "failed"
    assert "GHL rejected the pull" in runs[batches["revoked"]].batch["failure_reason"]
    slow_run = runs[batches["slow"]]
    assert slow_run.batch["status"] == "processing" and slow_run.batch["pull_completed_at"] is None
    assert 0 < slow_run.staged < 2000  # it went on as far as the deadline let it, in parallel with the others
    assert took < 4.0 + 2.0  # the deadline, plus the pages in flight at it
    for batch_id in batches.values():
        assert_counters_true(db, batch_id)


class SlowRepo:
    """The real repository behind a slow database: each stage call takes 0.25 s longer."""

    def __init__(self, repo):
        self._repo, self.stage_calls = repo, []

    def __getattr__(self, name):
        return getattr(self._repo, name)

    def stage_page(self, batch_id, kind, records, *args, **kwargs):
        time.sleep(0.25)
        self.stage_calls.append(len(records))
        return self._repo.stage_page(batch_id, kind, records, *args, **kwargs)


def test_a_stager_that_falls_behind_stages_the_waiting_pages_in_one_call(import_location, ghl_sandbox, db, repo,
                                                                         ghl_factory, settings):
    location, _ = import_location("internal", latency_ms=5)
    ghl_sandbox.seed(location.id, contacts=1000)
    slow = SlowRepo(repo)

    run = pull(slow, ghl_factory, settings, location.id, kinds=["contacts"])

    assert run.batch["status"] == "completed" and run.pages == 10
    assert sum(slow.stage_calls) == 1000 and len(slow.stage_calls) < 10
    assert max(slow.stage_calls) <= 100 * PAGES_AHEAD
    counts = assert_counters_true(db, run.batch["id"])
    assert counts["pull_state"]["contacts"]["pages"] == 10 and counts["pull_state"]["contacts"]["staged"] == 1000
    assert distinct_staged(db, run.batch["id"]) == (1000, 1000)
    assert ghl_sandbox.stats(location.id)["requests"][SEARCH] == 10
