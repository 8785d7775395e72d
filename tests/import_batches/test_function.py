"""process-ghl-import through the stack's gateway: auth, clear 400s, 422 for an unknown location, a pull and a
scheduler's process call, and a batch that fails when GHL refuses the location's token."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TEST_SCHEDULER_SECRET, unique
from tests.import_batches.conftest import assert_counters_true, contact_record, insert_prospect, unique_phone


def call(stack, body=None, token=TEST_SCHEDULER_SECRET, content=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(stack["functions"]["process-ghl-import"], json=body, content=content, headers=headers,
                      timeout=120)


@pytest.mark.parametrize("token", [None, "wrong-secret"])
def test_missing_or_wrong_credentials_get_401(stack, token):
    response = call(stack, {"action": "process"}, token=token)
    assert response.status_code == 401
    assert "SCHEDULER_SECRET" in response.json()["message"]
    assert "wrong-secret" not in response.text


@pytest.mark.parametrize("body, message", [
    ({}, "action must be"),
    ({"action": "import"}, "action must be"),
    ({"action": "pull"}, "location_id is required"),
    ({"action": "pull", "location_id": "x", "kinds": []}, "kinds must be a non-empty list"),
    ({"action": "pull", "location_id": "x", "kinds": ["contacts", "deals"]}, "unknown kind(s) deals"),
    ({"action": "pull", "location_id": "x", "since": "last tuesday"}, "since is not an ISO 8601"),
    ({"action": "pull", "location_id": "x", "created_by": "me"}, "created_by must be a UUID"),
    ({"action": "process", "batch_id": 12}, "batch_id must be a UUID string"),
    ({"action": "process", "batch_id": "00000000-0000-0000-0000-000000000000"}, "does not exist"),
    ({"action": "process", "kinds": ["calls"]}, "unknown field(s) for action process: kinds"),
    ({"action": "process", "batch_id": "6f1c1c4e-8d2a-4c59-9d77-0f3b8f1f2a10", "location_id": "x"},
     "process takes one of batch_id, location_id and dispatch"),
    ({"action": "process", "dispatch": "yes"}, "dispatch must be true or false"),
])
def test_bad_bodies_get_400_naming_the_problem(stack, body, message):
    response = call(stack, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


def test_a_body_that_is_not_json_gets_400(stack):
    response = call(stack, content=b"{not json")
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]


def test_a_location_without_an_active_integration_gets_422(stack):
    response = call(stack, {"action": "pull", "location_id": unique("nowhere")})
    assert response.status_code == 422 and "no active GHL integration" in response.json()["message"]


def test_pull_then_scheduler_process_through_the_function(stack, import_location, ghl_sandbox, db):
    location, _ = import_location("internal")
    contact = contact_record(phone=unique_phone())
    prospect = insert_prospect(db, phone=contact["phone"])
    ghl_sandbox.seed(location.id, contacts=30, calls=20, contact_records=[contact])
    user_id = db.execute("INSERT INTO auth.users (id) VALUES (gen_random_uuid()) RETURNING id").fetchone()["id"]

    response = call(stack, {"action": "pull", "location_id": location.id, "kinds": ["contacts", "calls"],
                            "since": "2000-01-01T00:00:00Z", "created_by": str(user_id)})

    assert response.status_code == 200, response.text
    batch = response.json()["batch"]
    assert batch["status"] == "completed" and batch["processed_records"] == batch["total_records"]
    assert batch["error_count"] == 0 and batch["run"]["pages_pulled"] >= 2
    assert "api_token" not in response.text and location.token not in response.text
    row = db.execute("SELECT created_by, kinds, since FROM ghl_import_batches WHERE id = %s",
                     (batch["id"],)).fetchone()
    assert row["created_by"] == user_id and row["kinds"] == ["contacts", "calls"]
    assert db.execute("SELECT ghl_contact_id FROM sales_prospects WHERE id = %s",
                      (prospect,)).fetchone()["ghl_contact_id"] == contact["id"]
    assert_counters_true(db, batch["id"])

    again = call(stack, {"action": "process", "batch_id": batch["id"]})
    assert again.status_code == 200 and again.json()["batch"]["status"] == "completed"
    assert again.json()["batch"]["run"]["chunks"] == 0


def test_ghl_rejecting_the_token_fails_the_batch_with_the_reason(stack, import_location, ghl_sandbox, db):
    location, _ = import_location("internal", token="revoked-token-for-test")
    ghl_sandbox.seed(location.id, contacts=5)

    response = call(stack, {"action": "pull", "location_id": location.id})

    assert response.status_code == 200, response.text
    batch = response.json()["batch"]
    assert batch["status"] == "failed" and "GHL answered 401" in batch["failure_reason"]
    assert "revoked-token-for-test" not in response.text
    # a scheduler's process call leaves a failed batch alone
    listed = call(stack, {"action": "process"})
    assert listed.status_code == 200
    assert batch["id"] not in [b["id"] for b in listed.json()["batches"]]
    assert_counters_true(db, batch["id"])
