"""Onboarding GHL locations: a token is checked against GHL before anything is stored, the custom field mapping is
proposed from the location's own fields, the integration is written in one round trip (`ghl-bridge location ...`).

Ports: `repo` (shared.adapters.integration_repository.IntegrationRepository) and `ghl_factory(location_id, token)`
-> GhlClient (the same client and per-location limiter as every other GHL request; nothing about the location
needs to be in the database for the check).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared import errors
from shared.domain.contact_mapping import (
    MAPPABLE_PROSPECT_FIELDS, MappingProposal, propose_custom_field_mapping, resolve_custom_field_mapping,
)
from shared.domain.ghl_models import CustomField
from shared.logs import get_logger

log = get_logger("services.onboarding")

INTEGRATION_TYPES = ("internal", "client")
# GHL location ids are short alphanumeric strings; this refuses spaces, slashes and pasted URLs.
_LOCATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WRONG_LOCATION_HINT = "does not have access to this location"


class TokenRefused(errors.BadRequest):
    """GHL did not accept the token for the location (wrong sub-account, revoked, mistyped, missing scope)."""

    code = "token_refused"


@dataclass(frozen=True)
class LocationCheck:
    """What GHL said with the token: the location's name and time zone, its contact custom fields (None when they
    could not be listed, with the reason in `fields_problem`)."""

    location_id: str
    location_name: str | None
    time_zone: str | None
    custom_fields: list[CustomField] | None
    fields_problem: str | None
    checked_at: datetime


def validate_location_id(location_id: str | None) -> str:
    text = (location_id or "").strip()
    if not _LOCATION_ID.match(text):
        raise errors.BadRequest(f"{location_id!r} is not a GHL location id (letters, digits, '_' or '-'; GHL shows "
                                "it under Settings > Business Profile, and in the sub-account's URL /location/<id>/)")
    return text


def _refusal(repo, location_id: str, token: str, exc: errors.GhlPermanentError) -> TokenRefused:
    said = f"GHL answered {exc.status_code}: {exc.ghl_message}"
    if exc.status_code in (401, 403) and WRONG_LOCATION_HINT in (exc.ghl_message or "").lower():
        owners = repo.locations_with_token(token, except_location=location_id) if repo is not None else []
        owner = ", ".join(f"{o['location_id']}" + (f" ({o['name']})" if o.get("name") else "") for o in owners)
        whose = (f"it is the token stored for location {owner}" if owner
                 else "it belongs to another sub-account")
        return TokenRefused(f"the token is not for location {location_id}: {whose} ({said}). Open sub-account "
                            f"{location_id} in GHL, Settings > Private Integrations, and use a token made there",
                            details={"location_id": location_id, "token_location": owners[0]["location_id"]
                                     if owners else None})
    if exc.status_code == 401:
        return TokenRefused(f"GHL refused the token for location {location_id} ({said}): it is revoked, expired or "
                            "mistyped; make a new one in GHL, Settings > Private Integrations",
                            details={"location_id": location_id})
    if exc.status_code == 403:
        return TokenRefused(f"GHL refused the token for location {location_id} ({said}): it lacks a scope; it needs "
                            "locations.readonly (and the others docs/onboarding.md lists)",
                            details={"location_id": location_id})
    return TokenRefused(f"GHL refused the location {location_id} with this token ({said})",
                        details={"location_id": location_id})


async def check_location_token_async(ghl_factory: Callable, location_id: str, token: str, *, repo=None,
                                     http=None) -> LocationCheck:
    """GET /locations/{id} with the token (it must answer that same location), then its contact custom fields.
    http: a connection pool shared with other locations' checks (None: the client's own)."""
    client = ghl_factory(location_id, token, http=http) if http is not None else ghl_factory(location_id, token)
    try:
        try:
            info = await client.get_location()
        except errors.GhlPermanentError as exc:
            raise _refusal(repo, location_id, token, exc) from None
        answered = info.get("id")
        if answered and answered != location_id:
            raise TokenRefused(f"the token is not for location {location_id}: GHL answered for location {answered}"
                               + (f" ({info['name']})" if info.get("name") else ""),
                               details={"location_id": location_id, "token_location": answered})
        checked_at = datetime.now(timezone.utc)
        fields, problem = None, None
        try:
            fields = await client.list_custom_fields(model="contact")
        except errors.GhlPermanentError as exc:
            problem = (f"the custom fields could not be listed (GHL answered {exc.status_code}: {exc.ghl_message}); "
                       "the token needs the scope locations/customFields.readonly")
        except errors.TransientError as exc:
            problem = f"the custom fields could not be listed ({exc.message})"
    finally:
        await client.aclose()
    return LocationCheck(location_id=location_id, location_name=info.get("name") or None,
                         time_zone=info.get("timezone") or None, custom_fields=fields, fields_problem=problem,
                         checked_at=checked_at)


def check_location_token(ghl_factory: Callable, location_id: str, token: str, *, repo=None) -> LocationCheck:
    return asyncio.run(check_location_token_async(ghl_factory, location_id, token, repo=repo))


def _field_rows(fields: list[CustomField] | None) -> list[tuple[str, str | None, str | None]]:
    return [(f.id, f.name, f.field_key) for f in fields or []]


def _proposal_dict(proposal: MappingProposal | None, fields_problem: str | None) -> dict[str, Any]:
    if proposal is None:
        return {"proposed": {}, "matched": [], "unmatched_prospect_fields": [], "unmatched_ghl_fields": [],
                "fields_listed": False, "fields_problem": fields_problem}
    return {"proposed": proposal.mapping,
            "matched": [{"prospect_field": p, "ghl_field_id": i, "ghl_field_name": n} for p, i, n in proposal.matched],
            "unmatched_prospect_fields": list(proposal.unmatched_prospect_fields),
            "unmatched_ghl_fields": [{"id": i, "name": n} for i, n in proposal.unmatched_ghl_fields],
            "fields_listed": True, "fields_problem": None}


def add_location(repo, ghl_factory: Callable, *, location_id: str, token: str, name: str | None = None,
                 integration_type: str | None = None, client_id: str | None = None) -> dict[str, Any]:
    """Check the token, propose the mapping, insert or update the integration. Nothing is stored when GHL refuses
    the token. integration_type None: a new row is internal, an existing one keeps its type and client."""
    return asyncio.run(add_location_async(repo, ghl_factory, location_id=location_id, token=token, name=name,
                                          integration_type=integration_type, client_id=client_id))


async def add_locations(repo, ghl_factory: Callable, rows: list[dict[str, Any]], *, concurrency: int = 8,
                        on_done: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """add_location for many rows ({location_id, token, name?, integration_type?, client_id?}) at once: each
    location has its own GHL budget, so up to `concurrency` are checked in parallel. One result per row, in order:
    the add's result, or {"ok": False, "location_id", "error": {"code", "message"}}; one bad row never stops the
    others. on_done(index, result) as each finishes. ghl_factory must take http= (one connection pool for all: a
    client of its own per location costs a TLS context each, about 0.1 s of CPU)."""
    from shared.adapters.ghl_client import shared_http_session

    gate = asyncio.Semaphore(concurrency)
    results: list[dict[str, Any]] = [{} for _ in rows]

    async def one(index: int, row: dict[str, Any]) -> None:
        async with gate:
            try:
                result = await add_location_async(repo, ghl_factory, http=http, **row)
            except errors.BridgeError as exc:
                result = {"ok": False, "location_id": row.get("location_id"),
                          "error": {"code": exc.code, "message": exc.message}}
        results[index] = result
        if on_done is not None:
            on_done(index, result)

    async with shared_http_session() as http:
        await asyncio.gather(*(one(i, row) for i, row in enumerate(rows)))
    return results


async def add_location_async(repo, ghl_factory: Callable, *, location_id: str, token: str, name: str | None = None,
                             integration_type: str | None = None, client_id: str | None = None,
                             http=None) -> dict[str, Any]:
    location_id = validate_location_id(location_id)
    token = (token or "").strip()
    if not token:
        raise errors.BadRequest("no token given (stdin, or the variable --token-env names)")
    if integration_type not in (None, *INTEGRATION_TYPES):
        raise errors.BadRequest(f"type must be internal or client, not {integration_type!r}")
    if integration_type == "client":
        try:
            client_id = str(uuid.UUID(str(client_id or "")))
        except ValueError:
            raise errors.BadRequest(f"a client location needs the portal client's id (a UUID), not {client_id!r}") \
                from None
    elif client_id:
        raise errors.BadRequest("a client id goes with a client location (--client), not an internal one")
    check = await check_location_token_async(ghl_factory, location_id, token, repo=repo, http=http)
    proposal = (propose_custom_field_mapping(_field_rows(check.custom_fields))
                if check.custom_fields is not None else None)
    # in a thread: the database client is synchronous, and other locations' checks go on meanwhile
    stored = await asyncio.to_thread(
        repo.upsert, location_id=location_id, api_token=token, name=(name or "").strip() or None,
        integration_type=integration_type, client_id=client_id if integration_type else None,
        location_name=check.location_name, time_zone=check.time_zone,
        custom_field_mapping=proposal.mapping if proposal else {}, token_checked_at=check.checked_at)
    integration = stored["integration"]
    log.info("location onboarded", extra={"fields": {"location_id": location_id, "outcome": stored["outcome"]}})
    return {"ok": True, "location_id": location_id, "outcome": stored["outcome"],
            "location_name": check.location_name, "time_zone": check.time_zone,
            "integration_type": integration["integration_type"], "client_id": integration["client_id"],
            "name": integration["name"], "is_active": integration["is_active"],
            "custom_field_mapping": integration.get("custom_field_mapping") or {},
            **_proposal_dict(proposal, check.fields_problem)}


def _existing(repo, location_id: str) -> dict[str, Any]:
    row = repo.get(validate_location_id(location_id))
    if row is None:
        raise errors.UnknownLocation(f"location {location_id} has no integration: add it with "
                                     f"`ghl-bridge location add {location_id}`")
    return row


def rotate_token(repo, ghl_factory: Callable, *, location_id: str, token: str) -> dict[str, Any]:
    """Replace a location's token with a new one, only once GHL has accepted the new one for that location."""
    _existing(repo, location_id)
    token = (token or "").strip()
    if not token:
        raise errors.BadRequest("no token given (stdin, or the variable --token-env names)")
    check = check_location_token(ghl_factory, location_id, token, repo=repo)
    row = repo.update(location_id, api_token=token, location_name=check.location_name, time_zone=check.time_zone,
                      token_checked_at=check.checked_at)
    log.info("location token rotated", extra={"fields": {"location_id": location_id}})
    return {"ok": True, "location_id": location_id, "location_name": check.location_name,
            "time_zone": check.time_zone, "token_checked_at": row["token_checked_at"]}


def set_active(repo, *, location_id: str, active: bool) -> dict[str, Any]:
    row = repo.update(validate_location_id(location_id), is_active=active)
    if row is None:
        raise errors.UnknownLocation(f"location {location_id} has no integration")
    return {"ok": True, "location_id": location_id, "is_active": row["is_active"]}


def map_fields(repo, ghl_factory: Callable, *, location_id: str,
               entries: dict[str, str | None]) -> dict[str, Any]:
    """Add, replace (prospect field -> GHL field id or fieldKey) or remove (None) custom_field_mapping entries,
    each checked against the location's own custom fields first; with no entries, only show the mapping next to
    the location's fields and a proposal. Nothing is stored when an entry is wrong."""
    row = _existing(repo, location_id)
    unknown = sorted(k for k in entries if k not in MAPPABLE_PROSPECT_FIELDS)
    if unknown:
        raise errors.BadRequest(f"not prospect fields: {', '.join(unknown)} "
                                f"(known: {', '.join(sorted(MAPPABLE_PROSPECT_FIELDS))})")
    check = check_location_token(ghl_factory, location_id, row["api_token"], repo=repo)
    if check.custom_fields is None:
        raise errors.BadRequest(f"location {location_id}: {check.fields_problem}")
    fields = _field_rows(check.custom_fields)
    to_set = {k: v for k, v in entries.items() if v}
    resolved = resolve_custom_field_mapping(to_set, [(i, key) for i, _, key in fields])
    if resolved.problems:
        raise errors.BadRequest(f"nothing stored: {resolved.problem_text}")
    changes: dict[str, str | None] = {k: None for k, v in entries.items() if not v}
    ids = dict(resolved.entries)  # column -> id (job_title resolves to contact_title's column)
    for key in to_set:
        changes[key] = ids[MAPPABLE_PROSPECT_FIELDS[key]]
    stored = repo.update(location_id, mapping_entries=changes) if changes else row
    mapping = stored.get("custom_field_mapping") or {}
    names = {i: n or key or i for i, n, key in fields}
    return {"ok": True, "location_id": location_id, "changed": sorted(changes),
            "custom_field_mapping": mapping,
            "mapped": [{"prospect_field": k, "ghl_field_id": v, "ghl_field_name": names.get(v)}
                       for k, v in sorted(mapping.items())],
            **_proposal_dict(propose_custom_field_mapping(fields), None)}


def list_locations(repo) -> dict[str, Any]:
    return {"ok": True, "locations": repo.list()}
