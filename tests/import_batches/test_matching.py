"""Every match rule (GHL contact id, E.164 phone, lower(email)) for internal and client locations, unmatched
contacts, conflicting ids reported with their reason, and the counters true after every step."""

from __future__ import annotations

from tests.import_batches.conftest import (
    assert_counters_true, contact_record, insert_contact, insert_prospect, pull, staged, unique_email, unique_phone,
)


def test_internal_location_matches_by_id_then_phone_then_email(import_location, ghl_sandbox, db, repo, ghl_factory,
                                                                 settings):
    location, _ = import_location("internal")
    by_id, by_phone, by_email, nobody = (contact_record(), contact_record(phone=unique_phone()),
                                         contact_record(email=unique_email()), contact_record(email=unique_email()))
    # the prospect written as a person types it: matched through the database's own match keys
    phone_digits = by_phone["phone"][2:]
    prospect_by_id = insert_prospect(db, first_name="Id", ghl_contact_id=by_id["id"])
    prospect_by_phone = insert_prospect(db, first_name="Phone",
                                        phone=f"({phone_digits[:3]}) {phone_digits[3:6]}-{phone_digits[6:]}")
    prospect_by_email = insert_prospect(db, first_name="Email", email=by_email["email"].upper())
    # an id match beats a phone match of another prospect
    by_id["phone"] = unique_phone()
    insert_prospect(db, first_name="Decoy", phone=by_id["phone"])
    ghl_sandbox.seed(location.id, contact_records=[by_id, by_phone, by_email, nobody])

    run = pull(repo, ghl_factory, settings, location.id, kinds=["contacts"])

    assert run.batch["status"] == "completed", run.batch
    rows = staged(db, run.batch["id"])
    assert {k: (r["status"], r["match_rule"], str(r["matched_prospect_id"]) if r["matched_prospect_id"] else None)
            for k, r in rows.items()} == {
        by_id["id"]: ("imported", "ghl_contact_id", prospect_by_id),
        by_phone["id"]: ("imported", "phone", prospect_by_phone),
        by_email["id"]: ("imported", "email", prospect_by_email),
        nobody["id"]: ("skipped", None, None),
    }
    assert "no prospect matches" in rows[nobody["id"]]["error_message"]
    # raw_data is the record as GHL sent it
    assert rows[by_email["id"]]["raw_data"]["email"] == by_email["email"]
    prospects = {str(r["id"]): r for r in db.execute(
        "SELECT id, ghl_contact_id, ghl_location_id FROM sales_prospects WHERE id = ANY(%s::uuid[])",
        ([prospect_by_id, prospect_by_phone, prospect_by_email],)).fetchall()}
    assert prospects[prospect_by_phone]["ghl_contact_id"] == by_phone["id"]
    assert prospects[prospect_by_email]["ghl_contact_id"] == by_email["id"]
    assert {p["ghl_location_id"] for p in prospects.values()} == {location.id}
    counts = assert_counters_true(db, run.batch["id"])
    assert (counts["total_records"], counts["processed_records"], counts["error_count"]) == (4, 4, 0)


def test_client_location_matches_only_the_clients_contacts(import_location, ghl_sandbox, db, repo, ghl_factory,
                                                           settings):
    location, client_id = import_location("client")
    _, other_client = import_location("client")
    by_id, by_phone, by_email, other = (contact_record(), contact_record(phone=unique_phone()),
                                        contact_record(email=unique_email()), contact_record(phone=unique_phone()))
    contact_by_id = insert_contact(db, client_id, ghl_contact_id=by_id["id"])
    contact_by_phone = insert_contact(db, client_id, phone=by_phone["phone"])
    contact_by_email = insert_contact(db, client_id, email=f"  {by_email['email'].title()} ")
    insert_contact(db, other_client, phone=other["phone"])  # another client's contact is never matched
    insert_prospect(db, phone=other["phone"])  # nor a prospect, for a client location
    ghl_sandbox.seed(location.id, contact_records=[by_id, by_phone, by_email, other])

    run = pull(repo, ghl_factory, settings, location.id, kinds=["contacts"])

    rows = staged(db, run.batch["id"])
    assert {k: (r["status"], r["match_rule"], str(r["matched_contact_id"]) if r["matched_contact_id"] else None)
            for k, r in rows.items()} == {
        by_id["id"]: ("imported", "ghl_contact_id", contact_by_id),
        by_phone["id"]: ("imported", "phone", contact_by_phone),
        by_email["id"]: ("imported", "email", contact_by_email),
        other["id"]: ("skipped", None, None),
    }
    assert all(r["matched_prospect_id"] is None for r in rows.values())
    linked = db.execute("SELECT ghl_contact_id, ghl_location_id FROM contacts WHERE id = %s",
                        (contact_by_phone,)).fetchone()
    assert linked == {"ghl_contact_id": by_phone["id"], "ghl_location_id": location.id}
    assert run.batch["status"] == "completed"
    assert_counters_true(db, run.batch["id"])


def test_conflicting_ids_are_errors_with_the_reason_and_nothing_is_overwritten(import_location, ghl_sandbox, db,
                                                                               repo, ghl_factory, settings):
    location, _ = import_location("internal")
    other_id_contact = contact_record(phone=unique_phone())
    other_location_contact = contact_record(email=unique_email())
    twin_a, twin_b = contact_record(email=unique_email()), contact_record()
    twin_b["email"] = twin_a["email"].upper()  # two GHL contacts, one prospect
    fine = contact_record(phone=unique_phone())
    holder = insert_prospect(db, phone=other_id_contact["phone"], ghl_contact_id="ghl-already-there")
    elsewhere = insert_prospect(db, email=other_location_contact["email"], ghl_location_id="another-location")
    twins = insert_prospect(db, email=twin_a["email"])
    insert_prospect(db, phone=fine["phone"])
    ghl_sandbox.seed(location.id, contact_records=[other_id_contact, other_location_contact, twin_a, twin_b, fine])

    run = pull(repo, ghl_factory, settings, location.id, kinds=["contacts"])

    rows = staged(db, run.batch["id"])
    conflict = rows[other_id_contact["id"]]
    assert conflict["status"] == "error"
    assert "conflicting GHL contact id" in conflict["error_message"]
    assert "ghl-already-there" in conflict["error_message"] and other_id_contact["id"] in conflict["error_message"]
    assert holder in conflict["error_message"]
    moved = rows[other_location_contact["id"]]
    assert moved["status"] == "error" and "another-location" in moved["error_message"]
    assert rows[twin_a["id"]]["status"] == "imported"
    assert rows[twin_b["id"]]["status"] == "error" and twin_a["id"] in rows[twin_b["id"]]["error_message"]
    assert rows[fine["id"]]["status"] == "imported"
    kept = {str(r["id"]): r for r in db.execute(
        "SELECT id, ghl_contact_id, ghl_location_id FROM sales_prospects WHERE id = ANY(%s::uuid[])",
        ([holder, elsewhere, twins],)).fetchall()}
    assert kept[holder]["ghl_contact_id"] == "ghl-already-there"
    assert kept[elsewhere] == {"id": kept[elsewhere]["id"], "ghl_contact_id": None,
                               "ghl_location_id": "another-location"}
    assert kept[twins]["ghl_contact_id"] == twin_a["id"]
    assert run.batch["status"] == "completed"
    counts = assert_counters_true(db, run.batch["id"])
    assert counts["error_count"] == 3 and counts["processed_records"] == 5


def test_unmatched_contacts_become_prospects_when_the_setting_says_so(import_location, ghl_sandbox, db, repo,
                                                                       ghl_factory, settings):
    location, _ = import_location("internal")
    newcomer = contact_record(email=unique_email(), phone=unique_phone(), companyName="Acme", tags=["a", "b"])
    ghl_sandbox.seed(location.id, contact_records=[newcomer])

    run = pull(repo, ghl_factory, settings.model_copy(update={"import_create_unmatched_prospects": True}),
               location.id, kinds=["contacts"])

    row = staged(db, run.batch["id"])[newcomer["id"]]
    assert (row["status"], row["match_rule"]) == ("imported", "created")
    prospect = db.execute("SELECT * FROM sales_prospects WHERE id = %s", (row["matched_prospect_id"],)).fetchone()
    assert (prospect["ghl_contact_id"], prospect["ghl_location_id"], prospect["email"], prospect["company_name"],
            prospect["tags"]) == (newcomer["id"], location.id, newcomer["email"], "Acme", ["a", "b"])
    assert_counters_true(db, run.batch["id"])
