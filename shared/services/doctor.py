"""Use case: is each location set up and running? The report `ghl-bridge doctor` prints and the health action of
process-ghl-import returns.

The report is a list of locations, each a list of check groups, each a list of checks
{name, status OK|WARN|FAIL, detail, fix}; plus general groups no location owns (the spool, deliveries no
location can be blamed for). Its status is the worst of its checks.

Where the facts come from:
  * the database: one SQL function per check group (`doctor_<group>_facts(p_location_ids)`), called once for
    every location at once (DoctorRepository) -> a pure function turns one location's facts into checks;
  * GHL (only when asked: check_ghl): one GET /locations/{id} per location (the token works; the daily budget
    left, read from the answer's rate-limit headers), and its custom fields when a custom_field_mapping is set;
  * the spool: the objects waiting for replay.

Adding a check group: a `doctor_<group>_facts(p_location_ids text[]) RETURNS jsonb` SQL function (same shape as
the others) and a `<group>_checks(location, facts, now)` function here, listed in FACT_GROUPS.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from shared import errors
from shared.domain.calls import CANONICAL_DISPOSITIONS
from shared.domain.contact_mapping import resolve_custom_field_mapping
from shared.logs import get_logger

log = get_logger("services.doctor")

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}

# Thresholds (what "late" means for each check)
STALE_DELIVERY = timedelta(days=7)  # no accepted webhook for this long: the workflows may be off
DUE_TOO_LONG = timedelta(hours=1)  # a prospect due this long: the sync is not running
SYNC_RUN_STALE = timedelta(days=1)
BATCH_STUCK = timedelta(minutes=30)  # an open import batch without progress for this long
ENRICH_BACKLOG_LATE = timedelta(hours=1)  # pending this long with work overdue: the enrich job is not running
ANALYSIS_BACKLOG_LATE = timedelta(hours=1)  # calls due this long: the analyze job is not running
ANALYSIS_BATCH_LATE = timedelta(hours=25)  # a Message Batch ends within 24 h: waiting longer means nobody collects
ANALYSIS_DISAGREEMENT_WARN = 0.5  # AI and regex disagree on more than this share: look at the prompt or the rules
SPOOL_TOO_OLD = timedelta(minutes=15)  # a spooled request this old: the replay is not running
SPOOL_COUNT_LIMIT = 10_000  # stop counting spooled objects beyond this
BUDGET_LOW_SHARE = 0.10
GHL_TIMEOUT_SECONDS = 15.0


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default=OK)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Group:
    name: str
    checks: list[Check]

    @property
    def status(self) -> str:
        return worst(c.status for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "checks": [c.to_dict() for c in self.checks]}


@dataclass
class LocationReport:
    location_id: str
    name: str | None
    integration_type: str | None
    is_active: bool
    groups: list[Group] = field(default_factory=list)

    @property
    def status(self) -> str:
        return worst(g.status for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"location_id": self.location_id, "name": self.name, "integration_type": self.integration_type,
                "is_active": self.is_active, "status": self.status, "groups": [g.to_dict() for g in self.groups]}


@dataclass
class DoctorReport:
    locations: list[LocationReport]
    general: list[Group]
    checked_at: datetime
    seconds: float = 0.0
    db_round_trips: int = 0
    ghl_requests: int = 0
    ghl_checked: bool = False

    @property
    def status(self) -> str:
        return worst([*(loc.status for loc in self.locations), *(g.status for g in self.general)])

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checked_at": self.checked_at.isoformat(), "seconds": round(self.seconds, 3),
                "db_round_trips": self.db_round_trips, "ghl_checked": self.ghl_checked,
                "ghl_requests": self.ghl_requests, "locations": [loc.to_dict() for loc in self.locations],
                "general": [g.to_dict() for g in self.general]}


# ---- small helpers ------------------------------------------------------------------------------------------------

def _when(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _counts(items: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(items.items())) or "none"


# ---- webhooks -------------------------------------------------------------------------------------------------------

def webhook_checks(location: dict, facts: dict, now: datetime) -> list[Check]:
    loc = location["location_id"]
    checks = []
    last = _when(facts.get("last_accepted_at"))
    last_24h = facts.get("last_24h") or {}
    summary = f"last 24 h: {_counts(last_24h)}"
    if last is None:
        checks.append(Check("last accepted delivery", WARN, f"no webhook accepted yet for this location ({summary})",
                            f"wire the Call Completed and Disposition workflows to the webhook URL (docs/operations.md"
                            f"#webhooks), then check the round trip: ghl-bridge webhook test --location {loc}"))
    elif now - last > STALE_DELIVERY:
        checks.append(Check("last accepted delivery", WARN, f"last accepted {_ago(last, now)} ({summary})",
                            "check that the location's call workflows are published and still post to the webhook"))
    else:
        checks.append(Check("last accepted delivery", OK, f"last accepted {_ago(last, now)} ({summary})"))

    rejections = facts.get("rejections_24h") or []
    not_logged = "a wrong or missing secret is answered 401 and not logged, so it is not counted here"
    if rejections:
        reasons = "; ".join(f"{r['count']}x {r['outcome']}: {r['reason']}" for r in rejections)
        checks.append(Check("rejected deliveries (24 h)", WARN, f"{reasons} ({not_logged})",
                            "fix what the reason names in the workflow's webhook body (docs/operations.md#webhooks); "
                            "unknown_location: the workflow posts another location id, or the integration is "
                            "inactive"))
    else:
        checks.append(Check("rejected deliveries (24 h)", OK, f"none ({not_logged}; GHL's workflow history "
                                                               "shows those)"))

    one_hit = facts.get("one_hit") or {}
    disposition_only, status_only = one_hit.get("disposition_only", 0), one_hit.get("status_only", 0)
    examples = ", ".join(one_hit.get("examples") or [])
    if disposition_only or status_only:
        parts = []
        fixes = []
        if disposition_only:
            parts.append(f"{disposition_only} with only the Disposition hit")
            fixes.append("the Call Completed workflow is missing or posts another call id")
        if status_only:
            parts.append(f"{status_only} with only the Call Completed hit")
            fixes.append("the Disposition workflow is missing, posts another call id or sends no disposition "
                         "(fine for calls nobody dispositions)")
        checks.append(Check("calls with one hit (older than 1 h, last 7 days)", WARN,
                            f"{'; '.join(parts)} (e.g. {examples})",
                            "; ".join(fixes) + ": both must post the same callId ({{message.id}})"))
    else:
        checks.append(Check("calls with one hit (older than 1 h, last 7 days)", OK, "every call got both hits"))

    unmapped = facts.get("unmapped_labels") or []
    if unmapped:
        labels = ", ".join(f"{u['label']!r} x{u['count']}" for u in unmapped)
        example = json.dumps(unmapped[0]["label"]).replace("'", "''")  # a JSON key inside an SQL literal
        checks.append(Check("disposition labels (30 days)", WARN,
                            f"not mapped to a canonical disposition (stored with an inferred one): {labels}",
                            "map them for this location: UPDATE ghl_integrations SET disposition_mapping = "
                            f"disposition_mapping || '{{{example}: \"<canonical disposition>\"}}' "
                            f"WHERE location_id = '{loc}' (one of: {', '.join(CANONICAL_DISPOSITIONS)}); calls "
                            "stored before keep their inferred disposition"))
    else:
        mapped = len(location.get("disposition_mapping") or {})
        checks.append(Check("disposition labels (30 days)", OK,
                            f"every label sent was mapped ({mapped} label(s) of this location's own, "
                            "plus the built-in synonyms)"))
    return checks


# ---- sync -----------------------------------------------------------------------------------------------------------

def sync_checks(location: dict, facts: dict, now: datetime) -> list[Check]:
    loc = location["location_id"]
    checks = []
    status, last = facts.get("last_sync_status"), _when(facts.get("last_synced_at"))
    run_fix = f"run it by hand to see the error: ghl-bridge sync --location {loc}"
    if status is None:
        checks.append(Check("last sync run", WARN, "the sync has never run for this location",
                            "schedule sync-prospects-to-ghl (docs/deploy.md) or " + run_fix))
    elif status == "failed":
        checks.append(Check("last sync run", FAIL, f"failed {_ago(last, now)}: {facts.get('last_sync_error')}",
                            run_fix))
    elif status == "partial":
        checks.append(Check("last sync run", WARN, f"partial {_ago(last, now)}: {facts.get('last_sync_error')}",
                            "see the failed prospects below; " + run_fix))
    elif last is not None and now - last > SYNC_RUN_STALE:
        checks.append(Check("last sync run", WARN, f"success, but {_ago(last, now)}",
                            "check the scheduler still calls sync-prospects-to-ghl"))
    else:
        checks.append(Check("last sync run", OK, f"{status} {_ago(last, now)}"))

    due, oldest = facts.get("due", 0), _when(facts.get("oldest_due_at"))
    if due and oldest is not None and now - oldest > DUE_TOO_LONG:
        checks.append(Check("prospects due", WARN, f"{due} due, the oldest changed {_ago(oldest, now)}",
                            "the sync is not keeping up or not running: check its schedule, or " + run_fix))
    else:
        checks.append(Check("prospects due", OK, f"{due} due" + (f", the oldest changed {_ago(oldest, now)}"
                                                                  if oldest else "")))

    failed, skipped = facts.get("failed", 0), facts.get("skipped", 0)
    if failed or skipped:
        reasons = "; ".join(f"{r['count']}x {r['kind']}: {r['reason']}" for r in facts.get("reasons") or [])
        checks.append(Check("failed and skipped prospects", WARN, f"{failed} failed, {skipped} skipped: {reasons}",
                            "failed ones are retried with backoff; skipped ones (e.g. no email and no phone) wait "
                            "for an edit of the prospect (docs/sync.md)"))
    else:
        checks.append(Check("failed and skipped prospects", OK, "none"))
    return checks


# ---- import ---------------------------------------------------------------------------------------------------------

def import_checks(location: dict, facts: dict, now: datetime) -> list[Check]:
    checks = []
    open_batches = facts.get("open") or []
    stuck = [b for b in open_batches
             if now - (_when(b.get("updated_at")) or _when(b.get("created_at")) or now) > BATCH_STUCK]

    def describe(b: dict) -> str:
        return (f"{b['id']} {b['status']} since {_ago(_when(b.get('created_at')), now)}, last progress "
                f"{_ago(_when(b.get('updated_at')), now)}, processed {b.get('processed_records') or 0}"
                f"/{b.get('total_records') if b.get('total_records') is not None else '?'}, "
                f"errors {b.get('error_count') or 0}")

    if stuck:
        checks.append(Check("unfinished import batches", FAIL, "; ".join(describe(b) for b in stuck),
                            f"advance it: ghl-bridge import process {stuck[0]['id']} (check that the scheduler calls "
                            "process-ghl-import {\"action\": \"process\"} and its logs)"))
    elif open_batches:
        checks.append(Check("unfinished import batches", OK, "in progress: " + "; ".join(map(describe, open_batches))))
    else:
        checks.append(Check("unfinished import batches", OK, "none"))

    failed = facts.get("failed_7d") or []
    if failed:
        checks.append(Check("failed import batches (7 days)", WARN,
                            f"{len(failed)} failed; latest {failed[0]['id']}: {failed[0].get('failure_reason')}",
                            "fix the reason, then start a new pull: ghl-bridge import pull --location "
                            f"{location['location_id']}"))
    else:
        checks.append(Check("failed import batches (7 days)", OK, "none"))
    return checks


def enrichment_checks(location: dict, facts: dict, now: datetime) -> list[Check]:
    """Transcripts and recordings (docs/enrichment.md): the backlog, and calls GHL never had anything for."""
    checks = []
    pending, overdue = facts.get("pending") or 0, facts.get("overdue") or 0
    oldest = _when(facts.get("oldest_pending_since"))
    backlog = f"{pending} call(s) waiting, oldest since {_ago(oldest, now)}, {overdue} overdue" if pending else "none"
    if overdue and oldest and now - oldest > ENRICH_BACKLOG_LATE:
        checks.append(Check("enrichment backlog", WARN, backlog,
                            "check that the scheduler calls process-ghl-import {\"action\": \"enrich\"} (job "
                            f"enrich-calls) and its logs, or run: ghl-bridge enrich --location {location['location_id']}"))
    else:
        checks.append(Check("enrichment backlog", OK, backlog))
    unavailable = facts.get("unavailable_7d") or 0
    if unavailable:
        checks.append(Check("calls without transcript/recording (7 days)", WARN,
                            f"{unavailable} given up after the horizon: {_counts(facts.get('unavailable_reasons') or {})}",
                            "GHL kept no transcript or recording for them: check that call recording and "
                            "transcription are on for the location's phone numbers in GHL (Settings > Phone Numbers)"))
    else:
        checks.append(Check("calls without transcript/recording (7 days)", OK, "none"))
    return checks


def analysis_prices(settings) -> dict:
    """The prices the spend estimate uses (ANALYSIS_PRICE_* settings)."""
    return {"price_input_per_mtok": settings.analysis_price_input_per_mtok,
            "price_output_per_mtok": settings.analysis_price_output_per_mtok,
            "batch_factor": settings.analysis_batch_price_factor}


def analysis_checks(location: dict, facts: dict, now: datetime, *, prices: dict | None = None) -> list[Check]:
    """Call analysis (docs/analysis.md): the switch, the backlog, failures, the last 24 h's tokens and estimated
    spend, and how often the AI's disposition and the regex inference disagree."""
    from shared.domain.call_analysis import estimated_cost_usd

    loc = location["location_id"]
    checks = []
    enabled = facts.get("enabled")
    pending, overdue = facts.get("pending") or 0, facts.get("overdue") or 0
    in_batches, batches = facts.get("in_batches") or 0, facts.get("batches") or 0
    oldest = _when(facts.get("oldest_pending_since"))
    if enabled is False:
        checks.append(Check("analysis switch", OK, "off for this location: no transcript is sent to Anthropic"
                            + (f" ({pending} call(s) marked before it was switched off wait)" if pending else ""),
                            None))
    else:
        checks.append(Check("analysis switch", OK, "on: transcripts of calls with a conversation go to Anthropic"))
    backlog = (f"{pending} call(s) waiting ({in_batches} in {batches} Message Batch(es)), oldest since "
               f"{_ago(oldest, now)}, {overdue} overdue" if pending else "none")
    run_fix = ("check that the scheduler calls process-ghl-import {\"action\": \"analyze\"} (job analyze-calls) and "
               f"its logs, or run: ghl-bridge analyze --location {loc}")
    if enabled is not False and ((overdue and oldest and now - oldest > ANALYSIS_BACKLOG_LATE)
                                 or (in_batches and oldest and now - oldest > ANALYSIS_BATCH_LATE)):
        checks.append(Check("analysis backlog", WARN, backlog, run_fix))
    else:
        checks.append(Check("analysis backlog", OK, backlog))
    failed = facts.get("failed_24h") or 0
    if failed:
        checks.append(Check("failed analyses (24 h)", WARN,
                            f"{failed} failed: {_counts(facts.get('failed_reasons') or {})}",
                            "an answer invalid twice or a refused request: read the reason; after a prompt fix, "
                            f"analyse them again: ghl-bridge analyze --location {loc} --again --since <ISO date>"))
    else:
        checks.append(Check("failed analyses (24 h)", OK, "none"))
    tokens = facts.get("tokens_24h") or {}
    prices = prices or {"price_input_per_mtok": 3.0, "price_output_per_mtok": 15.0, "batch_factor": 0.5}
    spend = estimated_cost_usd(tokens, **prices)
    total_in = tokens.get("live_input", 0) + tokens.get("batch_input", 0)
    total_out = tokens.get("live_output", 0) + tokens.get("batch_output", 0)
    checks.append(Check("analysis spend (24 h)", OK,
                        f"{facts.get('done_24h') or 0} analysed, {total_in} input + {total_out} output tokens "
                        f"({tokens.get('batch_input', 0) + tokens.get('batch_output', 0)} in batches): about "
                        f"${spend:.2f} at ${prices['price_input_per_mtok']}/${prices['price_output_per_mtok']} per "
                        "million tokens"))
    votes = facts.get("dispositions_24h") or {}
    compared, disagreed = votes.get("compared") or 0, votes.get("disagreed") or 0
    text = (f"AI and regex disagreed on {disagreed} of {compared} call(s) where both gave one"
            f" ({votes.get('regex_none') or 0} more had no regex disposition)")
    if compared >= 10 and disagreed / compared > ANALYSIS_DISAGREEMENT_WARN:
        checks.append(Check("AI vs regex dispositions (24 h)", WARN, text,
                            "read a few: SELECT disposition, analysis_regex_disposition, transcript FROM sales_calls "
                            "WHERE disposition_source = 'ai' ... (the AI's is stored; the regex's is kept beside it)"))
    else:
        checks.append(Check("AI vs regex dispositions (24 h)", OK, text))
    return checks


@dataclass(frozen=True)
class FactsGroup:
    """A check group read from the database: one SQL function for all locations, one pure function per location."""

    name: str
    sql_function: str
    checks: Callable[[dict, dict, datetime], list[Check]]
    applies: Callable[[dict], bool] = lambda location: True


FACT_GROUPS: list[FactsGroup] = [
    FactsGroup("webhooks", "doctor_webhook_facts", webhook_checks),
    FactsGroup("sync", "doctor_sync_facts", sync_checks, applies=lambda loc: loc.get("integration_type") == "internal"),
    FactsGroup("import", "doctor_import_facts", import_checks),
    FactsGroup("enrichment", "doctor_enrichment_facts", enrichment_checks),
    FactsGroup("analysis", "doctor_analysis_facts", analysis_checks),
]


# ---- GHL: the token, the budget, the custom field mapping -----------------------------------------------------------

def doctor_ghl_factory(settings) -> Callable:
    """GhlClient per location for the doctor: the settings' base URL and reserve, few retries (a check answers
    quickly rather than waiting out a long outage); `http`: one connection pool shared by every location."""

    def make(location_id: str, token: str, http=None):
        from shared.adapters.ghl_client import GhlClient

        return GhlClient(location_id=location_id, token=token, base_url=settings.ghl_api_base_url,
                         daily_reserve=settings.ghl_daily_budget_reserve, max_attempts=2, http=http,
                         timeout=min(settings.ghl_request_timeout_seconds, GHL_TIMEOUT_SECONDS),
                         max_rate_limit_waits=3)

    return make


def _mapping_check(location: dict, fields: list | None, ghl_checked: bool) -> Check:
    raw = location.get("custom_field_mapping")
    if not raw:
        return Check("custom field mapping", OK, "no custom fields mapped (only standard fields are pushed)")
    resolved = resolve_custom_field_mapping(raw, None if fields is None else [(f.id, f.field_key) for f in fields])
    fix = ("each key must be a prospect field and each value a custom field id (or fieldKey) of THIS location: "
           f"`ghl-bridge location map {location['location_id']}` lists them, `--field KEY=FIELD_ID` sets one "
           "(docs/onboarding.md)")
    if resolved.problems:
        return Check("custom field mapping", FAIL, "; ".join(resolved.problems), fix)
    if fields is None:
        why = "GHL was not asked" if not ghl_checked else "the location's fields could not be listed"
        return Check("custom field mapping", OK, f"{len(resolved.entries)} entr(ies), prospect fields known; field "
                                                 f"ids not checked ({why})")
    return Check("custom field mapping", OK, f"{len(resolved.entries)} entr(ies), every field exists")


async def _ghl_group(location: dict, factory: Callable, reserve: int, http) -> tuple[Group, int]:
    loc = location["location_id"]
    token_fix = ("make this location's Private Integration token (GHL > Settings > Private Integrations, scopes "
                 "contacts.readonly, contacts.write, locations.readonly, locations/customFields.readonly, "
                 f"conversations/message.readonly) and store it: `ghl-bridge location rotate-token {loc}` "
                 "(replaces ghl_integrations.api_token once GHL accepts it)")
    checks: list[Check] = []
    fields = None
    if not (location.get("api_token") or "").strip():
        return Group("ghl", [Check("token", FAIL, "ghl_integrations.api_token is empty", token_fix),
                             _mapping_check(location, None, True)]), 0
    client = factory(loc, location["api_token"], http=http)
    try:
        try:
            info = await client.get_location()
        except errors.GhlPermanentError as exc:
            checks.append(Check("token", FAIL, f"GHL refused it for {loc}: {exc.status_code} {exc.ghl_message}",
                                token_fix))
        except errors.BudgetExhausted as exc:
            checks.append(Check("token", WARN, f"not checked: {exc.message}", "wait for the daily budget to reset"))
        except errors.GhlTransientError as exc:
            checks.append(Check("token", FAIL, f"GHL did not answer: {exc.message}",
                                "check GHL_API_BASE_URL and GHL's status page, then run the doctor again"))
        else:
            name = info.get("name")
            checks.append(Check("token", OK, f"GHL answered for {loc}" + (f" ({name})" if name else "")))
            if location.get("custom_field_mapping"):
                try:
                    fields = await client.list_custom_fields(model="contact")
                except (errors.GhlPermanentError, errors.TransientError) as exc:
                    checks.append(Check("custom fields readable", FAIL, f"listing them failed: {exc.message}",
                                        token_fix))
        snapshot = client.limiter.snapshot()
        limit, left = snapshot.get("daily_limit"), snapshot.get("daily_remaining_estimate")
        if left is not None:
            text = f"about {left} of {limit} requests left today (reserve {reserve})"
            if left <= reserve:
                checks.append(Check("daily GHL budget", FAIL, text, "sync and import stop until GHL resets the "
                                                                    "daily budget; spread big imports over days"))
            elif limit and left < limit * BUDGET_LOW_SHARE:
                checks.append(Check("daily GHL budget", WARN, text, "big imports or syncs are spending it"))
            else:
                checks.append(Check("daily GHL budget", OK, text))
        requests = client.stats.requests
    finally:
        await client.aclose()
    checks.append(_mapping_check(location, fields, True))
    return Group("ghl", checks), requests


# ---- the spool ------------------------------------------------------------------------------------------------------

def _spool_key_time(key: str, prefix: str) -> datetime | None:
    stamp = key[len(prefix):].split("-", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def spool_checks(spool, now: datetime) -> list[Check]:
    if spool is None:
        return [Check("webhook spool", WARN, "no spool configured: while the database is unreachable the webhook "
                                             "answers 503 and keeps nothing",
                      "set SPOOL_S3_BUCKET (and SPOOL_S3_ENDPOINT_URL, credentials) for the webhook and "
                      "process-ghl-import (docs/deploy.md)")]
    try:
        keys = []
        for key in spool.keys():  # sorted by arrival: the first is the oldest
            keys.append(key)
            if len(keys) >= SPOOL_COUNT_LIMIT:
                break
    except Exception as exc:  # noqa: BLE001 - boto3/botocore errors: a check result, not a crash
        return [Check("webhook spool", FAIL, f"the spool cannot be listed ({type(exc).__name__})",
                      "check SPOOL_S3_* and the storage credentials")]
    if not keys:
        return [Check("webhook spool", OK, "no request waiting for replay")]
    oldest = _spool_key_time(min(keys), spool.prefix)
    count = f"{len(keys)}{'+' if len(keys) >= SPOOL_COUNT_LIMIT else ''}"
    text = f"{count} request(s) waiting for replay, the oldest received {_ago(oldest, now)}"
    fix = ("replay them: ghl-bridge replay (or process-ghl-import {\"action\": \"replay_spool\"}); check that the "
           "scheduler calls it")
    if oldest is None or now - oldest > SPOOL_TOO_OLD:
        return [Check("webhook spool", FAIL, text, fix)]
    return [Check("webhook spool", WARN, text + " (the next scheduled replay takes them)", fix)]


def unattributed_checks(facts: dict) -> list[Check]:
    checks = []
    unknown = facts.get("unknown_locations") or []
    if unknown:
        checks.append(Check("deliveries for unknown locations (24 h)", WARN,
                            ", ".join(f"{u['location_id']} x{u['count']}" for u in unknown),
                            "a workflow posts a location id with no integration row: add the integration, or fix "
                            "the workflow's locationId"))
    else:
        checks.append(Check("deliveries for unknown locations (24 h)", OK, "none"))
    rejected = facts.get("rejected_without_location") or []
    if rejected:
        checks.append(Check("rejected deliveries without a location (24 h)", WARN,
                            "; ".join(f"{r['count']}x {r['reason']}" for r in rejected),
                            "a workflow posts a body the webhook cannot read (docs/webhook.md lists the fields)"))
    else:
        checks.append(Check("rejected deliveries without a location (24 h)", OK, "none"))
    return checks


# ---- the run --------------------------------------------------------------------------------------------------------

def run_doctor(repo, *, location_id: str | None = None, check_ghl: bool = False, ghl_factory: Callable | None = None,
               ghl_reserve: int = 1000, spool=None, check_spool: bool = True,
               now: datetime | None = None, analysis_prices: dict | None = None) -> DoctorReport:
    """Build the report. repo: DoctorRepository; ghl_factory(location_id, token) -> GhlClient (needed when
    check_ghl); spool: ObjectSpool or None (not configured); analysis_prices: analysis_prices(settings), for the
    analysis group's spend estimate (default: Sonnet 4.5's list prices)."""
    started = time.monotonic()
    now = now or datetime.now(timezone.utc)
    locations = repo.locations(location_id)
    reports = [LocationReport(loc["location_id"], loc.get("name"), loc.get("integration_type"),
                              bool(loc.get("is_active"))) for loc in locations]
    if location_id is not None and not locations:
        reports.append(LocationReport(location_id, None, None, False, [Group("integration", [Check(
            "integration", FAIL, f"no ghl_integrations row for location {location_id}",
            "add the integration: INSERT INTO ghl_integrations (location_id, api_token, name, integration_type) "
            "... (docs/operations.md#integrations)")])]))
    active = [loc for loc in locations if loc.get("is_active")]
    by_id = {report.location_id: report for report in reports}
    for loc in locations:
        if not loc.get("is_active"):
            by_id[loc["location_id"]].groups.append(Group("integration", [Check(
                "integration", WARN, "inactive: webhooks for it are answered 422; sync and import skip it",
                f"UPDATE ghl_integrations SET is_active = true WHERE location_id = '{loc['location_id']}' "
                "(if it is meant to run)")]))

    ghl_requests = 0
    if check_ghl and active:
        if ghl_factory is None:
            raise ValueError("check_ghl needs a ghl_factory")

        async def all_ghl() -> list[tuple[Group, int]]:
            from shared.adapters.ghl_client import shared_http_session

            # one connection pool for all locations (each GhlClient applies its own timeouts)
            async with shared_http_session() as http:
                return await asyncio.gather(*(_ghl_group(loc, ghl_factory, ghl_reserve, http) for loc in active))

        for loc, (group, requests) in zip(active, asyncio.run(all_ghl())):
            by_id[loc["location_id"]].groups.append(group)
            ghl_requests += requests
    else:
        for loc in active:
            by_id[loc["location_id"]].groups.append(Group("ghl", [_mapping_check(loc, None, False)]))

    for group in FACT_GROUPS:
        targets = [loc for loc in active if group.applies(loc)]
        facts = repo.group_facts(group.sql_function, [loc["location_id"] for loc in targets])
        checks = partial(group.checks, prices=analysis_prices) if group.checks is analysis_checks else group.checks
        for loc in targets:
            by_id[loc["location_id"]].groups.append(
                Group(group.name, checks(loc, facts.get(loc["location_id"]) or {}, now)))

    general = [Group("webhooks (no location)", unattributed_checks(repo.unattributed_webhook_facts()))]
    if check_spool:
        general.append(Group("spool", spool_checks(spool, now)))
    report = DoctorReport(reports, general, now, time.monotonic() - started, repo.round_trips, ghl_requests,
                          check_ghl)
    log.info("doctor ran", extra={"fields": {"status": report.status, "locations": len(reports),
                                             "db_round_trips": report.db_round_trips, "ghl_requests": ghl_requests,
                                             "seconds": round(report.seconds, 3)}})
    return report
