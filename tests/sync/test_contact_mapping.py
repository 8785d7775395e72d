"""The prospect -> UpsertContactDto mapping and the custom field mapping check (pure)."""

from __future__ import annotations

import pytest

from shared.domain.contact_mapping import (
    CONTACT_SOURCE, CustomFieldMapping, plan_contact_upsert, resolve_custom_field_mapping,
)

FIELDS = [("cf_company", "contact.company_name"), ("cf_title", "contact.job_title"),
          ("cf_linkedin", "contact.linkedin_url"), ("cf_source", "contact.lead_source")]


def prospect(**overrides):
    row = {"id": "p-1", "first_name": "Ada", "last_name": "Lovelace", "company_name": "Analytical Engines",
           "email": "ada@example.com", "phone": "(555) 010-2233", "contact_title": "CTO",
           "linkedin_url": "https://linkedin.com/in/ada", "market_name": "London", "source": "conference",
           "tags": ["vip", "2026"], "campaign": "spring", "ghl_contact_id": None}
    row.update(overrides)
    return row


def test_full_prospect_becomes_the_upsert_body_with_e164_phone_and_custom_fields():
    mapping = resolve_custom_field_mapping(
        {"company_name": "cf_company", "contact_title": "cf_title", "linkedin_url": "cf_linkedin"}, FIELDS)
    plan = plan_contact_upsert(prospect(), location_id="loc1", mapping=mapping)
    assert plan.skip_reason is None
    assert plan.body == {
        "locationId": "loc1", "firstName": "Ada", "lastName": "Lovelace", "companyName": "Analytical Engines",
        "source": CONTACT_SOURCE, "email": "ada@example.com", "phone": "+15550102233", "tags": ["vip", "2026"],
        "customFields": [{"id": "cf_company", "value": "Analytical Engines"}, {"id": "cf_title", "value": "CTO"},
                         {"id": "cf_linkedin", "value": "https://linkedin.com/in/ada"}],
    }


def test_value_key_is_configurable_and_checked():
    mapping = resolve_custom_field_mapping({"linkedin_url": "cf_linkedin"}, FIELDS)
    plan = plan_contact_upsert(prospect(), location_id="loc1", mapping=mapping, value_key="field_value")
    assert plan.body["customFields"] == [{"id": "cf_linkedin", "field_value": "https://linkedin.com/in/ada"}]
    with pytest.raises(ValueError, match="value key"):
        plan_contact_upsert(prospect(), location_id="loc1", mapping=mapping, value_key="val")


def test_email_and_phone_only_when_present():
    plan = plan_contact_upsert(prospect(phone=None, email="  "), location_id="l", mapping=CustomFieldMapping())
    assert plan.body is None and "no email" in plan.skip_reason
    only_email = plan_contact_upsert(prospect(phone="", tags=[]), location_id="l", mapping=CustomFieldMapping())
    assert "phone" not in only_email.body and "tags" not in only_email.body
    only_phone = plan_contact_upsert(prospect(email=None), location_id="l", mapping=CustomFieldMapping())
    assert "email" not in only_phone.body and only_phone.body["phone"] == "+15550102233"


def test_unreadable_phone_is_dropped_with_a_note_and_alone_means_skip():
    plan = plan_contact_upsert(prospect(phone="call me"), location_id="l", mapping=CustomFieldMapping())
    assert "phone" not in plan.body and plan.notes
    skipped = plan_contact_upsert(prospect(phone="12", email=None), location_id="l", mapping=CustomFieldMapping())
    assert skipped.body is None


def test_default_region_applies_to_national_numbers():
    plan = plan_contact_upsert(prospect(phone="020 7946 0958"), location_id="l", mapping=CustomFieldMapping(),
                               default_region="GB")
    assert plan.body["phone"] == "+442079460958"


def test_names_are_sent_even_when_empty_so_a_cleared_name_clears_in_ghl():
    plan = plan_contact_upsert(prospect(first_name=" ", company_name=None), location_id="l",
                               mapping=CustomFieldMapping())
    assert plan.body["firstName"] is None and plan.body["companyName"] is None


def test_tags_are_trimmed_and_deduplicated_in_order():
    plan = plan_contact_upsert(prospect(tags=[" b", "a", "b", "", None]), location_id="l",
                               mapping=CustomFieldMapping())
    assert plan.body["tags"] == ["b", "a"]


def test_empty_custom_field_values_are_left_out():
    mapping = resolve_custom_field_mapping({"linkedin_url": "cf_linkedin", "source": "cf_source"}, FIELDS)
    plan = plan_contact_upsert(prospect(linkedin_url="", source="web"), location_id="l", mapping=mapping)
    assert plan.body["customFields"] == [{"id": "cf_source", "value": "web"}]


def test_mapping_with_unknown_ids_and_fields_keeps_the_good_entries_and_reports_the_rest():
    mapping = resolve_custom_field_mapping(
        {"company_name": "cf_company", "linkedin_url": "cf_gone", "shoe_size": "cf_title", "source": 7}, FIELDS)
    assert mapping.entries == (("company_name", "cf_company"),)
    text = mapping.problem_text
    assert "'linkedin_url' -> 'cf_gone'" in text and "'shoe_size' is not a prospect field" in text
    assert "'source' must map" in text


def test_mapping_accepts_field_keys_and_the_job_title_alias():
    mapping = resolve_custom_field_mapping({"job_title": "contact.job_title", "linkedin_url": "linkedin_url"},
                                           FIELDS)
    assert mapping.problems == ()
    assert set(mapping.entries) == {("contact_title", "cf_title"), ("linkedin_url", "cf_linkedin")}


def test_mapping_without_location_fields_is_taken_as_written_and_non_objects_are_reported():
    assert resolve_custom_field_mapping({"source": "anything"}, None).entries == (("source", "anything"),)
    assert resolve_custom_field_mapping(None, FIELDS) == CustomFieldMapping()
    assert "JSON object" in resolve_custom_field_mapping(["x"], FIELDS).problem_text
