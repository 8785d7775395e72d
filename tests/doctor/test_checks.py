"""Each doctor check's OK, WARN and FAIL on a stack seeded to produce it (shared/services/doctor.py)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from psycopg.types.json import Jsonb

from tests.conftest import unique
from tests.doctor.conftest import backdate_call, completed_hit, disposition_hit, find

pytestmark = pytest.mark.stack


def test_a_healthy_location_is_ok_in_every_check(db, location, run):
    loc = location(custom_field_mapping={"company_name": "cf_company"},
                   custom_fields=[{"id": "cf_company", "name": "Company"}])
    call_id = unique("call")
    completed_hit(db, loc, call_id)
    disposition_hit(db, loc, call_id)
    db.execute("SELECT finish_prospect_sync_run(%s, 'success')", (loc,))
    report = run(loc, check_ghl=True)
    [got] = report.locations
    assert got.status == "OK", got.to_dict()
    assert [g.name for g in got.groups] == ["ghl", "webhooks", "sync", "import", "enrichment", "analysis"]
    assert find(report, loc, "ghl", "token").detail.startswith(f"GHL answered for {loc}")
    assert "left today" in find(report, loc, "ghl", "daily GHL budget").detail
    assert "every field exists" in find(report, loc, "ghl", "custom field mapping").detail


@pytest.mark.parametrize("which", ["unknown token", "another location's token"])
def test_a_bad_token_fails(db, location, ghl_sandbox, run, which):
    token = "not-a-token" if which == "unknown token" else ghl_sandbox.create_location().token
    loc = location(token=token)
    report = run(loc, check_ghl=True)
    check = find(report, loc, "ghl", "token")
    assert (check.status, report.status) == ("FAIL", "FAIL")
    assert "401" in check.detail and "api_token" in check.fix
    assert token not in str(report.to_dict())


def test_the_daily_budget(location, ghl_sandbox, run):
    fine = location()
    ghl_sandbox.configure_location(fine, daily_limit=5000)
    check = find(run(fine, check_ghl=True), fine, "ghl", "daily GHL budget")
    assert check.status == "OK" and "4999 of 5000" in check.detail, check
    spent = location()  # the reserve (1000) is all that is left after the doctor's one request
    ghl_sandbox.configure_location(spent, daily_limit=1001)
    report = run(spent, check_ghl=True)
    check = find(report, spent, "ghl", "daily GHL budget")
    assert (check.status, report.status) == ("FAIL", "FAIL") and "1000 of 1001" in check.detail, check


def test_an_empty_token_fails_without_a_request(db, location, run):
    loc = location()
    db.execute("UPDATE ghl_integrations SET api_token = '' WHERE location_id = %s", (loc,))
    report = run(loc, check_ghl=True)
    assert find(report, loc, "ghl", "token").detail == "ghl_integrations.api_token is empty"
    assert report.ghl_requests == 0


def test_without_check_ghl_no_ghl_request_is_made(db, location, ghl_sandbox, run):
    loc = location(custom_field_mapping={"company_name": "cf_nope"})
    report = run(loc)
    assert report.ghl_requests == 0 and not report.ghl_checked
    assert [c.name for c in next(g for g in report.locations[0].groups if g.name == "ghl").checks] == [
        "custom field mapping"]
    assert "not checked" in find(report, loc, "ghl", "custom field mapping").detail
    assert ghl_sandbox.stats(loc)["requests_total"] == 0
    run(loc, check_ghl=True)
    stats = ghl_sandbox.stats(loc)
    assert stats["requests"] == {"GET /locations/{locationId}": 1, "GET /locations/{locationId}/customFields": 1}
    assert stats["contract_violations"] == 0, stats["contract_violation_details"]


@pytest.mark.parametrize(("mapping", "status", "words"), [
    ({"company_name": "cf_company"}, "OK", "every field exists"),
    ({"company_name": "contact.company"}, "OK", "every field exists"),  # by fieldKey
    ({"company_name": "cf_from_another_location"}, "FAIL", "has no such custom field"),
    ({"shoe_size": "cf_company"}, "FAIL", "is not a prospect field"),
    (None, "OK", "no custom fields mapped"),
])
def test_custom_field_mapping(location, run, mapping, status, words):
    loc = location(custom_field_mapping=mapping, custom_fields=[{"id": "cf_company", "name": "Company"}])
    check = find(run(loc, check_ghl=True), loc, "ghl", "custom field mapping")
    assert check.status == status and words in check.detail, check


def test_a_prospect_field_that_does_not_exist_fails_without_ghl_too(location, run):
    loc = location(custom_field_mapping={"shoe_size": "cf_x"})
    assert find(run(loc), loc, "ghl", "custom field mapping").status == "FAIL"


def test_deliveries_and_rejections(db, location, run):
    loc = location()
    check = find(run(loc), loc, "webhooks", "last accepted")
    assert check.status == "WARN" and "webhook test" in check.fix
    assert "not logged" in find(run(loc), loc, "webhooks", "rejected").detail  # a wrong secret is never counted
    completed_hit(db, loc, unique("call"))
    db.execute("SELECT record_rejected_webhook('{}', 'no call id: send callId', NULL, %s)", (loc,))
    report = run(loc)
    assert find(report, loc, "webhooks", "last accepted").status == "OK"
    assert "inserted 1" in find(report, loc, "webhooks", "last accepted").detail
    rejected = find(report, loc, "webhooks", "rejected")
    assert rejected.status == "WARN" and "1x rejected: no call id: send callId" in rejected.detail


def test_a_one_hit_call_warns_after_an_hour(db, location, run):
    loc = location()
    status_only, disposition_only, complete, young = (unique("call") for _ in range(4))
    completed_hit(db, loc, status_only)
    disposition_hit(db, loc, disposition_only)
    completed_hit(db, loc, complete)
    disposition_hit(db, loc, complete)
    completed_hit(db, loc, young)
    for call_id in (status_only, disposition_only, complete):
        backdate_call(db, call_id, hours=2)
    check = find(run(loc), loc, "webhooks", "calls with one hit")
    assert check.status == "WARN"
    assert "1 with only the Disposition hit" in check.detail and "1 with only the Call Completed hit" in check.detail
    assert status_only in check.detail and complete not in check.detail and young not in check.detail
    disposition_hit(db, loc, status_only)
    completed_hit(db, loc, disposition_only)
    assert find(run(loc), loc, "webhooks", "calls with one hit").status == "OK"


def test_unmapped_labels_warn_until_the_mapping_names_them(db, location, run):
    loc = location("client")
    for _ in range(2):
        disposition_hit(db, loc, unique("call"), label="Zebra!")
    disposition_hit(db, loc, unique("call"), label="Meeting booked")  # a built-in synonym: mapped
    check = find(run(loc), loc, "webhooks", "disposition labels")
    assert check.status == "WARN" and "'Zebra!' x2" in check.detail and "Meeting" not in check.detail
    assert "disposition_mapping" in check.fix
    db.execute("UPDATE ghl_integrations SET disposition_mapping = %s WHERE location_id = %s",
               (Jsonb({"zebra": "Not Interested"}), loc))
    assert find(run(loc), loc, "webhooks", "disposition labels").status == "OK"


def test_sync_checks(db, location, run):
    loc = location()
    assert find(run(loc), loc, "sync", "last sync run").status == "WARN"  # never ran
    db.execute("SELECT finish_prospect_sync_run(%s, 'failed', 'GHL answered 401: Invalid JWT')", (loc,))
    check = find(run(loc), loc, "sync", "last sync run")
    assert check.status == "FAIL" and "Invalid JWT" in check.detail
    db.execute("SELECT finish_prospect_sync_run(%s, 'success')", (loc,))
    db.execute("INSERT INTO sales_prospects (first_name, email, ghl_location_id, content_updated_at) "
               "VALUES ('Old', %s, %s, now() - interval '3 hours')", (f"{uuid.uuid4().hex}@example.com", loc))
    db.execute("INSERT INTO sales_prospects (first_name, ghl_location_id, ghl_sync_error, ghl_sync_attempts, "
               "ghl_sync_next_attempt_at) VALUES ('Failing', %s, 'GHL answered 422: bad phone', 1, "
               "now() + interval '1 hour')", (loc,))
    report = run(loc)
    due = find(report, loc, "sync", "prospects due")
    assert due.status == "WARN" and due.detail.startswith("1 due")
    failed = find(report, loc, "sync", "failed and skipped")
    assert failed.status == "WARN" and "1 failed" in failed.detail and "bad phone" in failed.detail


def test_client_locations_have_no_sync_group(location, run):
    loc = location("client")
    [got] = run(loc).locations
    assert "sync" not in [g.name for g in got.groups]


def test_a_stuck_import_batch_fails(db, location, run):
    loc = location()
    assert find(run(loc), loc, "import", "unfinished").detail == "none"
    batch = db.execute("SELECT create_import_batch(%s, '{contacts}', NULL, NULL) AS b", (loc,)).fetchone()["b"]
    check = find(run(loc), loc, "import", "unfinished")
    assert check.status == "OK" and batch["id"] in check.detail  # in progress, moving
    db.execute("SET session_replication_role = replica")  # no updated_at trigger: the batch last moved 2 h ago
    try:
        db.execute("UPDATE ghl_import_batches SET created_at = now() - interval '3 hours', "
                   "updated_at = now() - interval '2 hours' WHERE id = %s", (batch["id"],))
    finally:
        db.execute("SET session_replication_role = origin")
    report = run(loc)
    check = find(report, loc, "import", "unfinished")
    assert (check.status, report.status) == ("FAIL", "FAIL")
    assert f"ghl-bridge import process {batch['id']}" in check.fix and "last progress 2 h ago" in check.detail
    db.execute("SELECT fail_import_batch(%s, 'GHL refused the token')", (batch["id"],))
    report = run(loc)
    assert find(report, loc, "import", "unfinished").status == "OK"
    failed = find(report, loc, "import", "failed import batches")
    assert failed.status == "WARN" and "GHL refused the token" in failed.detail


@pytest.fixture
def spool(stack, monkeypatch):
    from shared.adapters.object_spool import ObjectSpool

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    return ObjectSpool(endpoint_url=stack["s3_endpoint_url"], bucket="ghl-webhook-spool", region="us-east-1",
                       prefix=f"doctor-{uuid.uuid4().hex[:8]}/")


def spool_check(report):
    [group] = [g for g in report.general if g.name == "spool"]
    return group.checks[0]


def test_enrichment_backlog_and_calls_given_up(db, location, run):
    loc = location()
    assert find(run(loc), loc, "enrichment", "enrichment backlog").detail == "none"
    waiting, given_up = unique("call"), unique("call")
    for call_id in (waiting, given_up):
        completed_hit(db, loc, call_id)
    # one call waiting for two hours with its next attempt long due (the enrich job is not running) ...
    db.execute("UPDATE sales_calls SET enrichment_requested_at = now() - interval '2 hours', "
               "enrichment_next_attempt_at = now() - interval '1 hour' WHERE external_call_id = %s", (waiting,))
    # ... and one GHL never had anything for
    db.execute("UPDATE sales_calls SET enrichment_status = 'unavailable', enrichment_next_attempt_at = NULL, "
               "enrichment_last_error = 'transcript: GHL answered 404' WHERE external_call_id = %s", (given_up,))
    report = run(loc)
    backlog = find(report, loc, "enrichment", "enrichment backlog")
    assert backlog.status == "WARN" and "1 call(s) waiting" in backlog.detail and "1 overdue" in backlog.detail
    assert "ghl-bridge enrich --location" in backlog.fix
    unavailable = find(report, loc, "enrichment", "calls without transcript/recording")
    assert unavailable.status == "WARN" and "transcript: GHL answered 404 1" in unavailable.detail, unavailable


def test_analysis_backlog_failures_spend_and_disagreements(db, location, run):
    from shared.services.doctor import analysis_prices
    from tests.doctor.conftest import ingest, settings_for_prices

    loc = location()
    report = run(loc)
    assert find(report, loc, "analysis", "analysis backlog").detail == "none"
    assert find(report, loc, "analysis", "analysis switch").detail.startswith("on")
    words = " ".join(["word"] * 50)
    ids = [unique("call") for _ in range(4)]
    for call_id in ids:
        ingest(db, loc, call_id, call_status="Answered", transcript=f"Agent: hello {words}\nContact: call me back",
               raw={"callId": call_id})
    waiting, failed, agreed, disagreed = ids
    db.execute("UPDATE sales_calls SET analysis_requested_at = now() - interval '2 hours', "
               "analysis_next_attempt_at = now() - interval '1 hour' WHERE external_call_id = %s", (waiting,))
    db.execute("UPDATE sales_calls SET analysis_status = 'failed', analysis_reason = 'invalid answer twice: x', "
               "analysed_at = now(), analysis_input_tokens = 100000, analysis_output_tokens = 0 "
               "WHERE external_call_id = %s", (failed,))
    for call_id, ai, batched in ((agreed, "Callback Requested", False), (disagreed, "Meeting Booked", True)):
        db.execute("UPDATE sales_calls SET analysis_status = 'done', analysed_at = now(), analysis_batched = %s, "
                   "ai_summary = jsonb_build_object('disposition', %s::text), "
                   "analysis_regex_disposition = 'Callback Requested', analysis_input_tokens = 1000000, "
                   "analysis_output_tokens = 100000 WHERE external_call_id = %s", (batched, ai, call_id))
    report = run(loc)
    backlog = find(report, loc, "analysis", "analysis backlog")
    assert backlog.status == "WARN" and "1 call(s) waiting" in backlog.detail and "1 overdue" in backlog.detail
    assert "ghl-bridge analyze --location" in backlog.fix
    failures = find(report, loc, "analysis", "failed analyses")
    assert failures.status == "WARN" and "invalid answer twice: x 1" in failures.detail
    spend = find(report, loc, "analysis", "analysis spend")
    # live: 1.1 M in + 0.1 M out = $3.30 + $1.50; batched: (1 M x $3 + 0.1 M x $15) / 2 = $2.25
    assert "2 analysed" in spend.detail and "about $7.05" in spend.detail, spend
    votes = find(report, loc, "analysis", "AI vs regex")
    assert votes.status == "OK" and "disagreed on 1 of 2" in votes.detail
    db.execute("UPDATE ghl_integrations SET call_analysis_enabled = false WHERE location_id = %s", (loc,))
    switch = find(run(loc), loc, "analysis", "analysis switch")
    assert switch.detail.startswith("off") and "1 call(s) marked before" in switch.detail
    assert analysis_prices(settings_for_prices())["batch_factor"] == 0.5


def test_the_spool(location, run, spool):
    loc = location()
    assert spool_check(run(loc, check_spool=True, spool=None)).status == "WARN"  # not configured
    assert spool_check(run(loc, check_spool=True, spool=spool)).status == "OK"
    key = spool.put(b"{}", received_at=datetime.now(timezone.utc), request_id="r1")
    check = spool_check(run(loc, check_spool=True, spool=spool))
    assert check.status == "WARN" and check.detail.startswith("1 request(s) waiting")
    spool.put(b"{}", received_at=datetime.now(timezone.utc) - timedelta(hours=1), request_id="r0")
    report = run(loc, check_spool=True, spool=spool)
    check = spool_check(report)
    assert (check.status, report.status) == ("FAIL", "FAIL") and "1 h ago" in check.detail
    assert "ghl-bridge replay" in check.fix
    for k in list(spool.keys()):
        spool.delete(k)
    assert key


def test_unknown_and_inactive_locations(db, location, run):
    missing = unique("loc")
    report = run(missing)
    assert report.status == "FAIL" and "no ghl_integrations row" in report.locations[0].groups[0].checks[0].detail
    inactive = location(active=False)
    [got] = run(inactive).locations
    assert got.status == "WARN" and [g.name for g in got.groups] == ["integration"]


def test_one_round_trip_per_check_group_for_every_location_at_once(db, location, run):
    locations = [location() for _ in range(3)]
    report = run(None)
    assert len(report.locations) >= 3 and {loc for loc in locations} <= {r.location_id for r in report.locations}
    # doctor_locations + one call per fact group (webhooks, sync, import, enrichment, analysis) + the unattributed
    # deliveries
    assert report.db_round_trips == 7


def test_unknown_location_deliveries_show_in_the_general_group(db, run, location):
    loc = location()
    stranger = unique("loc")
    db.execute("SELECT ingest_call_event(%s)", (Jsonb({"external_call_id": unique("call"), "location_id": stranger,
                                                       "raw": {}}),))
    [group] = [g for g in run(loc).general if g.name == "webhooks (no location)"]
    check = next(c for c in group.checks if c.name.startswith("deliveries for unknown"))
    assert check.status == "WARN" and f"{stranger} x1" in check.detail
