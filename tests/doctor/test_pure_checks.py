"""The doctor's pure parts: what each check says for facts the stack tests cannot produce quickly (a delivery a
week old, a partial run, a budget nearly spent), and the report's status."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.services import doctor

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
LOCATION = {"location_id": "loc_1", "integration_type": "internal", "disposition_mapping": {}}


def by_name(checks, start):
    [found] = [c for c in checks if c.name.startswith(start)]
    return found


def test_a_delivery_older_than_a_week_warns():
    facts = {"last_accepted_at": (NOW - timedelta(days=8)).isoformat(), "last_24h": {}}
    check = by_name(doctor.webhook_checks(LOCATION, facts, NOW), "last accepted")
    assert check.status == "WARN" and "8 d ago" in check.detail
    facts["last_accepted_at"] = (NOW - timedelta(days=6)).isoformat()
    assert by_name(doctor.webhook_checks(LOCATION, facts, NOW), "last accepted").status == "OK"


def test_sync_run_partial_and_stale():
    partial = {"last_sync_status": "partial", "last_synced_at": NOW.isoformat(), "last_sync_error": "2 failed"}
    assert by_name(doctor.sync_checks(LOCATION, partial, NOW), "last sync run").status == "WARN"
    stale = {"last_sync_status": "success", "last_synced_at": (NOW - timedelta(days=2)).isoformat()}
    check = by_name(doctor.sync_checks(LOCATION, stale, NOW), "last sync run")
    assert check.status == "WARN" and "scheduler" in check.fix
    fresh = {"last_sync_status": "success", "last_synced_at": (NOW - timedelta(minutes=5)).isoformat(),
             "due": 3, "oldest_due_at": (NOW - timedelta(minutes=20)).isoformat()}
    assert [c.status for c in doctor.sync_checks(LOCATION, fresh, NOW)] == ["OK", "OK", "OK"]


def test_an_import_batch_moving_is_ok_a_still_one_fails():
    moving = {"id": "b1", "status": "processing", "created_at": (NOW - timedelta(hours=5)).isoformat(),
              "updated_at": (NOW - timedelta(minutes=1)).isoformat(), "total_records": 10, "processed_records": 4}
    assert by_name(doctor.import_checks(LOCATION, {"open": [moving]}, NOW), "unfinished").status == "OK"
    still = {**moving, "updated_at": (NOW - timedelta(minutes=31)).isoformat()}
    check = by_name(doctor.import_checks(LOCATION, {"open": [still]}, NOW), "unfinished")
    assert check.status == "FAIL" and "processed 4/10" in check.detail


def test_spool_key_times_are_read_from_the_key():
    key = "ghl-webhook-spool/20261202T115500.123456Z-req-abcdef12.json"
    assert doctor._spool_key_time(key, "ghl-webhook-spool/") == datetime(2026, 12, 2, 11, 55, 0, 123456,
                                                                             tzinfo=timezone.utc)
    assert doctor._spool_key_time("ghl-webhook-spool/odd.json", "ghl-webhook-spool/") is None


def test_the_report_is_as_bad_as_its_worst_check():
    ok, warn, fail = (doctor.Check("c", s, "d") for s in ("OK", "WARN", "FAIL"))
    location = doctor.LocationReport("loc_1", None, "internal", True, [doctor.Group("g", [ok, warn])])
    report = doctor.DoctorReport([location], [doctor.Group("spool", [ok])], NOW)
    assert (location.status, report.status) == ("WARN", "WARN")
    report.general.append(doctor.Group("x", [fail]))
    assert report.status == "FAIL" and report.to_dict()["status"] == "FAIL"
    assert doctor.DoctorReport([], [], NOW).status == "OK"


def test_an_enrichment_backlog_warns_only_when_overdue_and_old():
    old = (NOW - timedelta(hours=2)).isoformat()
    running = doctor.enrichment_checks(LOCATION, {"pending": 40, "overdue": 0, "oldest_pending_since": old}, NOW)
    assert by_name(running, "enrichment backlog").status == "OK"  # waiting for GHL, retried on schedule
    stalled = doctor.enrichment_checks(LOCATION, {"pending": 40, "overdue": 3, "oldest_pending_since": old}, NOW)
    assert by_name(stalled, "enrichment backlog").status == "WARN"
    fresh = (NOW - timedelta(minutes=10)).isoformat()
    just_in = doctor.enrichment_checks(LOCATION, {"pending": 2, "overdue": 2, "oldest_pending_since": fresh}, NOW)
    assert by_name(just_in, "enrichment backlog").status == "OK"
