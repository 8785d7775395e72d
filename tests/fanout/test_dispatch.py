"""Fan-out through the local stack: the functions dispatch to the Cloud Tasks stand-in, whose tasks come back
through the gateway to the batch functions' worker processes."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from shared.services.fanout import JOBS, task_id
from tests.conftest import TEST_SCHEDULER_SECRET
from tests.fanout.conftest import AUTH, INVOKER, SYNC_QUEUE


def post(url: str, body: dict, headers: dict | None = None, timeout: float = 120) -> httpx.Response:
    return httpx.post(url, json=body, headers=AUTH if headers is None else headers, timeout=timeout)


def dispatch_sync(stack) -> dict:
    answer = post(stack["functions"]["sync-prospects-to-ghl"], {"dispatch": True})
    assert answer.status_code == 200, answer.text
    return answer.json()["dispatch"]


def tasks_of(tasks_admin, locations: list[str]) -> dict[str, list[dict]]:
    """The queue's attempts per location of `locations` (by the task's name)."""
    names = {task_id(JOBS["sync"], location, 0).rsplit("-", 1)[0]: location for location in locations}
    found: dict[str, list[dict]] = {location: [] for location in locations}
    for attempt in tasks_admin.attempts(SYNC_QUEUE):
        location = names.get(attempt["task"].rsplit("-", 1)[0])
        if location:
            found[location].append(attempt)
    return found


def pushed_counts(db, locations: list[str]) -> dict[str, tuple[int, int]]:
    rows = db.execute("SELECT ghl_location_id, count(*) AS total, count(ghl_contact_id) AS pushed "
                      "FROM sales_prospects WHERE ghl_location_id = ANY(%s) GROUP BY 1", (locations,)).fetchall()
    return {row["ghl_location_id"]: (row["total"], row["pushed"]) for row in rows}


def assert_every_prospect_pushed_once(db, sandbox, locations: list[str], per_location: int) -> int:
    """Every prospect has its contact, each location's contacts are its prospects (none twice); the number of
    upserts beyond one per contact is returned (an in-flight push repeated after a kill)."""
    counts = pushed_counts(db, locations)
    assert counts == {location: (per_location, per_location) for location in locations}
    repeats = 0
    for location in locations:
        contacts = sandbox.contacts(location)
        emails = [c["email"] for c in contacts]
        assert len(emails) == per_location and len(set(emails)) == per_location, location
        stats = sandbox.stats(location)
        assert stats["contract_violations"] == 0, stats["contract_violation_details"]
        repeats += sum(n - 1 for n in stats["upserts_per_contact"].values())
        ids = {row["ghl_contact_id"] for row in db.execute(
            "SELECT ghl_contact_id FROM sales_prospects WHERE ghl_location_id = %s", (location,)).fetchall()}
        assert ids == {c["id"] for c in contacts}
    return repeats


def test_a_scheduled_sync_creates_one_task_per_due_location_once_per_slot(
        fanout_stack, fdb, sandbox, tasks_admin, sync_locations):
    locations = sync_locations(30, prospects=4)
    idle = sync_locations(1, prospects=0)[0]  # an integration with nothing due: no task

    tasks_admin.pause(SYNC_QUEUE)  # the tasks wait, so the second dispatch still sees every location due
    try:
        first = dispatch_sync(fanout_stack)
        second = dispatch_sync(fanout_stack)  # the same slot: every task exists already
        assert len(tasks_admin.tasks(SYNC_QUEUE)["live"]) == first["created"]
    finally:
        tasks_admin.resume(SYNC_QUEUE)
    assert first["job"] == "sync" and first["slot"] == second["slot"]
    assert first["locations"] == 30 and first["created"] == 30  # the first test of a fresh database
    assert second["created"] == 0 and second["existing"] == second["locations"] == 30

    tasks_admin.wait_until_idle(SYNC_QUEUE, timeout=120)
    attempts = tasks_of(tasks_admin, locations + [idle])
    assert attempts[idle] == []
    for location in locations:
        assert len({a["task"] for a in attempts[location]}) == 1, attempts[location]  # one task per slot
        assert attempts[location][-1]["status"] == 200
    assert assert_every_prospect_pushed_once(fdb, sandbox, locations, 4) == 0

    # Nothing due any more: a dispatch lists none of them.
    listed = {row["due_locations_sync"] for row in fdb.execute("SELECT due_locations_sync()").fetchall()}
    assert not listed & set(locations + [idle])

    # A prospect added later in the same slot: the location's slot task is done and its name still taken
    # (the dedup window), so it waits for the next slot, and nothing is run twice in this one.
    from tests.sync.conftest import insert_prospects

    insert_prospects(fdb, locations[0], 1)
    third = dispatch_sync(fanout_stack)
    assert third["locations"] == 1 and third["created"] == 0 and third["existing"] == 1


def test_tasks_carry_cloud_tasks_headers_and_the_location_body(fanout_stack, fdb, tasks_admin, sync_locations):
    location = sync_locations(1, prospects=1)[0]
    dispatch_sync(fanout_stack)
    state = tasks_admin.wait_until_idle(SYNC_QUEUE)
    name = task_id(JOBS["sync"], location, 0).rsplit("-", 1)[0]
    finished = [t for t in state["finished"] if t["task"].startswith(name)]
    assert finished and finished[-1]["outcome"] == "completed"
    log = (fanout_stack["log_dir"] + "/function-sync-prospects-to-ghl.log")
    lines = [json.loads(line) for line in open(log, encoding="utf-8") if line.startswith("{")]
    handled = [line for line in lines if line.get("message") == "sync run handled"
               and line.get("location_id") == location]
    assert handled and handled[-1]["task"] == finished[-1]["task"] and handled[-1]["status"] == 200


def test_one_location_never_has_two_sync_runners_at_once(fanout_stack, fdb, sandbox, sync_locations):
    url = fanout_stack["functions"]["sync-prospects-to-ghl"]
    location = sync_locations(1, prospects=30, latency_ms=100)[0]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(url, {"location_id": location}), range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}, [a.text for a in answers]
    busy = [a.json() for a in answers if a.status_code == 409]
    assert busy and all(b["error"] == "location_busy" for b in busy)
    worked = [a.json()["locations"][0] for a in answers if a.status_code == 200]
    assert sum(w["pushed"] for w in worked) == 30
    assert fdb.execute("SELECT count(*) AS n FROM ghl_job_leases WHERE location_id = %s",
                       (location,)).fetchone()["n"] == 0  # released at the end
    assert assert_every_prospect_pushed_once(fdb, sandbox, [location], 30) == 0


def test_two_dispatches_racing_create_each_task_once(fanout_stack, fdb, sandbox, tasks_admin, sync_locations):
    locations = sync_locations(10, prospects=3)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: dispatch_sync(fanout_stack), range(2)))
    mine = tasks_admin.wait_until_idle(SYNC_QUEUE)
    assert sum(r["created"] for r in reports) + sum(r["existing"] for r in reports) == 2 * reports[0]["locations"]
    attempts = tasks_of(tasks_admin, locations)
    for location in locations:
        assert len({a["task"] for a in attempts[location]}) == 1
    assert mine["live"] == []
    assert assert_every_prospect_pushed_once(fdb, sandbox, locations, 3) == 0


def _sync_workers(stack) -> list[psutil.Process]:
    return psutil.Process(stack["sync_pid"]).children()


def test_a_worker_killed_mid_task_loses_and_duplicates_nothing(fanout_stack, fdb, sandbox, tasks_admin,
                                                             sync_locations):
    # 20 requests per second per location: 60 prospects take about 3 s each, long enough to be caught mid-run.
    locations = sync_locations(3, prospects=60, burst_limit=20, burst_window_ms=1000)
    workers_before = {p.pid for p in _sync_workers(fanout_stack)}
    dispatch_sync(fanout_stack)
    deadline = time.monotonic() + 30
    while sum(pushed for _, pushed in pushed_counts(fdb, locations).values()) < 20:
        assert time.monotonic() < deadline, "the tasks did not start"
        time.sleep(0.05)
    for worker in _sync_workers(fanout_stack):  # every worker process of the function: SIGKILL mid-task
        worker.kill()
    killed_at = time.time()
    partial = sum(pushed for _, pushed in pushed_counts(fdb, locations).values())
    assert partial < 180, "the kill came too late to test anything"

    tasks_admin.wait_until_idle(SYNC_QUEUE, timeout=120)
    assert {p.pid for p in _sync_workers(fanout_stack)}.isdisjoint(workers_before)  # gunicorn replaced them
    attempts = tasks_of(tasks_admin, locations)
    failed_then_done = 0
    for location in locations:
        assert len({a["task"] for a in attempts[location]}) == 1  # the same task, retried
        assert attempts[location][-1]["status"] == 200
        if any(a["status"] != 200 and a["ended_at"] >= killed_at - 1 for a in attempts[location]):
            failed_then_done += 1
    assert failed_then_done >= 1  # the killed runs' tasks failed and were retried
    repeats = assert_every_prospect_pushed_once(fdb, sandbox, locations, 60)
    # Only a prospect claimed by a killed run can be pushed twice (its push was in flight, or answered and not
    # yet written): at most one claim of 2 x GHL_MAX_IN_FLIGHT per location; GHL's upsert matched the same contact.
    assert repeats <= 3 * 2 * 4


def _oidc_token(**claims) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    body = {"email": INVOKER, "email_verified": True, "exp": int(time.time()) + 600, **claims}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(body)}.SIGNATURE_REMOVED_BY_GOOGLE"


@pytest.mark.parametrize("function", ["sync-prospects-to-ghl", "process-ghl-import"])
def test_the_batch_functions_accept_only_the_invokers_token_for_themselves(fanout_stack, function):
    url = fanout_stack["functions"][function]
    base = url.rsplit("/", 1)[0]
    body = {"location_id": "loc_nowhere"} if function == "sync-prospects-to-ghl" else {
        "action": "health", "location_id": "loc_nowhere"}
    refused = [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {_oidc_token(aud=url, email='someone@else.iam.gserviceaccount.com')}"},
        {"Authorization": f"Bearer {_oidc_token(aud=url, email_verified=False)}"},
        {"Authorization": f"Bearer {_oidc_token(aud=url, exp=int(time.time()) - 3600)}"},
        {"Authorization": f"Bearer {_oidc_token(aud=base + '/ghl-call-webhook')}"},
    ]
    for headers in refused:
        answer = post(url, body, headers=headers, timeout=30)
        assert answer.status_code == 401, (headers, answer.text)
    accepted = post(url, body, headers={"Authorization": f"Bearer {_oidc_token(aud=url)}"}, timeout=30)
    assert accepted.status_code != 401, accepted.text
    assert TEST_SCHEDULER_SECRET not in accepted.text


def test_dispatch_refuses_other_fields(fanout_stack):
    answer = post(fanout_stack["functions"]["sync-prospects-to-ghl"], {"dispatch": True, "limit": 5})
    assert answer.status_code == 400 and "dispatch takes no other field" in answer.json()["message"]
    answer = post(fanout_stack["functions"]["process-ghl-import"], {"action": "process", "dispatch": True,
                                                                     "location_id": "x"})
    assert answer.status_code == 400 and "one of batch_id, location_id and dispatch" in answer.json()["message"]


def test_import_and_enrich_dispatch_list_only_locations_with_due_work(fanout_stack, fdb):
    url = fanout_stack["functions"]["process-ghl-import"]
    fdb.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES ('loc_fanout_import', 't')")
    batch = fdb.execute("INSERT INTO ghl_import_batches (location_id, status) VALUES ('loc_fanout_import', "
                        "'completed') RETURNING id").fetchone()
    nothing = post(url, {"action": "process", "dispatch": True}).json()["dispatch"]
    assert nothing["job"] == "import" and nothing["locations"] == 0 and nothing["created"] == 0
    fdb.execute("UPDATE ghl_import_batches SET status = 'pending' WHERE id = %s", (batch["id"],))
    one = post(url, {"action": "process", "dispatch": True}).json()["dispatch"]
    assert one["locations"] == 1 and one["created"] == 1 and one["queue"] == "ghl-bridge-import"
    enrich = post(url, {"action": "enrich", "dispatch": True}).json()["dispatch"]
    assert enrich["job"] == "enrich" and enrich["queue"] == "ghl-bridge-enrich"


def test_analyze_dispatch_sends_one_task_per_location_with_calls_to_analyse(fanout_stack, fdb):
    """The analyze job fans out like the others: only a location with analysis on and a call due gets a task, on
    the analyze queue, and the task analyses that location's call."""
    from tests.analysis.conftest import MEETING, upsert
    from tests.conftest import unique
    from tests.sync.conftest import insert_integration

    url = fanout_stack["functions"]["process-ghl-import"]
    due, switched_off, idle = unique("loc_fan_an"), unique("loc_fan_off"), unique("loc_fan_idle")
    for location_id in (due, switched_off, idle):
        insert_integration(fdb, location_id)
    fdb.execute("UPDATE ghl_integrations SET call_analysis_enabled = false WHERE location_id = %s", (switched_off,))
    call = upsert(fdb, due, transcript=MEETING)
    off_call = upsert(fdb, switched_off, transcript=MEETING)
    assert call["analysis_status"] == "pending" and off_call["analysis_status"] == "skipped"

    listed = [r["due_locations_analyze"] for r in fdb.execute("SELECT due_locations_analyze()").fetchall()]
    assert due in listed and switched_off not in listed and idle not in listed
    first = post(url, {"action": "analyze", "dispatch": True}).json()["dispatch"]
    assert first["job"] == "analyze" and first["queue"] == "ghl-bridge-analyze" and first["created"] >= 1
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = fdb.execute("SELECT analysis_status, ai_summary FROM sales_calls WHERE id = %s", (call["id"],)).fetchone()
        if done["analysis_status"] == "done":
            break
        time.sleep(0.5)
    assert done["analysis_status"] == "done" and done["ai_summary"]["disposition"] == "Meeting Booked"
    assert fdb.execute("SELECT analysis_status FROM sales_calls WHERE id = %s",
                       (off_call["id"],)).fetchone()["analysis_status"] == "skipped"
    listed = [r["due_locations_analyze"] for r in fdb.execute("SELECT due_locations_analyze()").fetchall()]
    assert due not in listed  # nothing left to analyse: no task in the next slot
