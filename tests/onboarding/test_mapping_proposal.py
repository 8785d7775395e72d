"""The mapping proposal (pure): prospect fields matched to a location's custom fields by name or fieldKey."""

from __future__ import annotations

from shared.domain.contact_mapping import field_name_key, propose_custom_field_mapping


def test_names_match_ignoring_case_spaces_and_punctuation():
    assert field_name_key("LinkedIn URL") == field_name_key("linkedin_url") == field_name_key("Linked-In  url!")
    assert field_name_key(None) == ""


def test_matches_by_name_or_field_key_and_reports_the_rest():
    proposal = propose_custom_field_mapping([
        ("f_li", "LinkedIn URL", "contact.linkedin"),
        ("f_title", "Position", "contact.job_title"),  # the fieldKey matches the portal's older name job_title
        ("f_market", "Market Name", None),
        ("f_colour", "Favourite colour", "contact.favourite_colour"),
    ])
    assert proposal.mapping == {"linkedin_url": "f_li", "contact_title": "f_title", "market_name": "f_market"}
    assert proposal.unmatched_prospect_fields == ("source", "campaign")
    assert proposal.unmatched_ghl_fields == (("f_colour", "Favourite colour"),)
    assert ("contact_title", "f_title", "Position") in proposal.matched


def test_a_field_is_used_once_and_contact_title_beats_job_title():
    proposal = propose_custom_field_mapping([("a", "Contact Title", None), ("b", "Job Title", None),
                                             ("c", "Campaign", "contact.source")])
    # contact_title comes first in the portal's fields: job_title (the same column) proposes nothing more;
    # "c" is named Campaign and keyed source: matched once, by the first prospect field that finds it (source)
    assert proposal.mapping["contact_title"] == "a"
    assert list(proposal.mapping.values()).count("c") == 1
    assert ("b", "Job Title") in proposal.unmatched_ghl_fields


def test_no_fields_no_proposal():
    proposal = propose_custom_field_mapping([])
    assert proposal.mapping == {} and proposal.matched == () and proposal.unmatched_ghl_fields == ()
    assert proposal.unmatched_prospect_fields == ("contact_title", "linkedin_url", "market_name", "source",
                                                  "campaign")
