"""A database made by an earlier release, upgraded the way the stack and deploy.sh do, ends identical to a fresh one.

For each release point: the database is built from that commit's migrations (`git show`, with that commit's
local bootstrap), each version recorded in supabase_migrations.schema_migrations as the stack and deploy.sh
record it; then the stack's own code (database.prepare_database, what `stack up` runs on an existing database,
and the same rule deploy.sh's psql path and `supabase db push` follow: apply every file whose version is not
recorded) applies today's migrations. Its whole catalog (ghl_bridge/stack/catalog.py: tables, columns,
defaults, constraints, indexes, triggers, functions, views, RLS and policies, grants, ...) must equal a fresh
database's; any difference fails with the object named.

It replaces the test that each SQL function was defined in one migration (a later migration redefining a
function is now the normal way to change it). That test kept stale definitions from surviving anywhere; now,
whatever redefinitions a database went through, it must end with exactly the definitions a fresh one has.
The last test here checks the one data repair (20261204000200): calls stored while an upgraded database ran
the old merge get what a fresh database gives the same hits, and no other row is touched.

Add a release point: append the commit (every landed main is a release) to RELEASE_POINTS. A commit missing
from the clone fails the test saying so (a shallow clone must fetch the history); it never skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from ghl_bridge.paths import BOOTSTRAP_SQL
from ghl_bridge.stack import catalog, database
from tests.integration import git_history

RELEASE_POINTS = ["1097d79", "3387666"]


def version_of(file_name: str) -> str:
    return file_name.partition("_")[0]


@pytest.fixture(scope="module")
def server(stack) -> str:
    return database.with_database(stack["database_url"], "postgres")


@contextmanager
def throwaway_database(server: str) -> Iterator[str]:
    name = f"t_upgrade_{uuid.uuid4().hex[:10]}"
    url = database.create_database(server, name)
    try:
        yield url
    finally:
        database.drop_database(server, name)


@pytest.fixture(scope="module")
def fresh_catalog(server) -> dict[str, str]:
    with throwaway_database(server) as url:
        database.prepare_database(url, seed=False)
        return catalog.snapshot_of(url)


def recorded_versions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT version FROM supabase_migrations.schema_migrations")}


@pytest.mark.parametrize("release", RELEASE_POINTS)
def test_a_database_of_an_earlier_release_upgrades_to_what_a_fresh_one_is(release, server, fresh_catalog,
                                                                           tmp_path):
    commit = git_history.commit(release)
    old_files = git_history.export_migrations(commit, tmp_path / "migrations")
    assert old_files, f"{release} has no migrations under {git_history.MIGRATIONS_PATH}"
    today = {version_of(path.name) for path in database.migration_files()}

    with throwaway_database(server) as url:
        database.apply_bootstrap(url, git_history.file_at(commit, BOOTSTRAP_SQL))
        made = database.apply_migrations(url, tmp_path / "migrations")
        assert made == [version_of(name) for name in old_files]
        at_release = recorded_versions(url)

        database.prepare_database(url, seed=False)  # the upgrade, by the stack's own code
        upgraded = catalog.snapshot_of(url)
        after_upgrade = recorded_versions(url)

    differences = catalog.differences(fresh_catalog, upgraded)
    assert not differences, (
        f"a database made at {release} and upgraded differs from a fresh one (a landed migration was edited? "
        "redefine the object in a new migration):\n  " + "\n  ".join(differences))

    # `supabase db push` stops on a recorded version without a file ("Remote migration versions not found in
    # local migrations directory"), and on an unrecorded file older than the newest recorded one unless
    # --include-all (allowed only for the restored no-ops).
    assert at_release - today == set(), f"versions {release} recorded have no file today"
    out_of_order = {v for v in today - at_release if v < max(at_release)}
    assert out_of_order <= git_history.RESTORED_VERSIONS, (
        f"files older than {release}'s newest version: {sorted(out_of_order)}")
    assert after_upgrade == today


def test_the_comparison_names_each_kind_of_difference(server, fresh_catalog):
    """A change of each kind the issue lists is found and named (so a pass above means the same catalog)."""
    changes = {
        "differs: column public.sales_calls.notes": "ALTER TABLE sales_calls ALTER COLUMN notes SET DEFAULT 'x'",
        "differs: constraint public.ghl_import_batches.ghl_import_batches_status_check":
            "ALTER TABLE ghl_import_batches DROP CONSTRAINT ghl_import_batches_status_check, ADD CONSTRAINT "
            "ghl_import_batches_status_check CHECK (status IN ('pending', 'processing', 'completed'))",
        "extra: index public.calls_notes_idx": "CREATE INDEX calls_notes_idx ON calls (notes)",
        "differs: trigger public.sales_calls.sales_calls_set_updated_at":
            "ALTER TABLE sales_calls DISABLE TRIGGER sales_calls_set_updated_at",
        "differs: function public.normalize_call_status(raw text)":
            "ALTER FUNCTION normalize_call_status(text) SET search_path = public",
        "extra: view public.call_notes": "CREATE VIEW call_notes AS SELECT notes FROM calls",
        "differs: relation public.clients": "ALTER TABLE clients DISABLE ROW LEVEL SECURITY",
        "extra: policy public.contacts.anon_reads":
            "CREATE POLICY anon_reads ON contacts FOR SELECT TO anon USING (true)",
        "differs: relation public.ghl_integrations": "GRANT SELECT ON ghl_integrations TO PUBLIC",
        "missing: column public.calls.recording_path": "ALTER TABLE calls DROP COLUMN recording_path",
        "differs: column public.call_fields.notes":
            "ALTER TYPE call_fields DROP ATTRIBUTE notes, ADD ATTRIBUTE notes text",  # moved last
    }
    with throwaway_database(server) as url:
        database.prepare_database(url, seed=False)
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in changes.values():
                conn.execute(statement)
        found = catalog.differences(fresh_catalog, catalog.snapshot_of(url))
    assert set(changes) <= set(found), sorted(set(changes) - set(found))


# ---- Calls stored while an upgraded database ran the old merge (20261204000200 backfills them) ----

OLD_MERGE_DATABASE = ("1097d79", "3387666")  # made before the disposition names, upgraded after them
STATUS = {"callStatus": "completed", "direction": "outbound", "duration": 30}
# call -> its webhook bodies (after the status hit), as GHL's Disposition workflow sends them
DISPOSITION_HITS = {
    "mapped": [{"disposition": "booked"}],  # the example: only the location's mapping knows it
    "synonym_under_custom_data": [{"customData": {"call_disposition": "  not interested "}}],
    "unmapped": [{"Disposition": "Left a weird note"}],
    "two_labels": [{"disposition": "booked"}, {"disposition": "voicemail"}],  # order unknown: left alone
    "no_label": [],
}
FIXABLE = {"mapped", "synonym_under_custom_data", "unmapped"}


def send_hits(url: str, run: str) -> None:
    """Each call's hits through ingest_call_event with the payload the webhook builds (its real parser)."""
    import json

    from shared.domain.webhook_payload import parse_call_payload

    with psycopg.connect(url, autocommit=True) as conn:
        client = conn.execute("INSERT INTO clients (name) VALUES ('backfill') RETURNING id").fetchone()[0]
        for location, kind in ((f"loc_internal_{run}", "internal"), (f"loc_client_{run}", "client")):
            conn.execute("INSERT INTO ghl_integrations (location_id, api_token, integration_type, client_id, "
                         "disposition_mapping) VALUES (%s, 'token', %s, %s, %s)",
                         (location, kind, client if kind == "client" else None,
                          json.dumps({"Booked!": "Meeting Booked"})))
            for call, hits in DISPOSITION_HITS.items():
                for body in [STATUS, *hits]:
                    payload = parse_call_payload({"callId": f"{call}_{location}", "locationId": location, **body})
                    conn.execute("SELECT ingest_call_event(%s::jsonb)", (json.dumps(payload.to_sql_payload()),))


def stored_calls(url: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        return {row[0].rsplit("_loc_", 1)[0] + ("@calls" if table == "calls" else ""): row[1:]
                for table in ("sales_calls", "calls")
                for row in conn.execute(f"SELECT external_call_id, disposition, disposition_source, disposition_label, "
                                        f"updated_at FROM {table}")}


def test_calls_stored_by_the_old_merge_get_what_a_fresh_database_gives_them(server, tmp_path):
    run = uuid.uuid4().hex[:6]
    with throwaway_database(server) as fresh:
        database.prepare_database(fresh, seed=False)
        send_hits(fresh, run)
        expected = stored_calls(fresh)

    made_at, upgraded_to = (git_history.commit(ref) for ref in OLD_MERGE_DATABASE)
    with throwaway_database(server) as url:
        database.apply_bootstrap(url, git_history.file_at(made_at, BOOTSTRAP_SQL))
        git_history.export_migrations(made_at, tmp_path / "made")
        git_history.export_migrations(upgraded_to, tmp_path / "upgraded")
        database.apply_migrations(url, tmp_path / "made")
        database.apply_migrations(url, tmp_path / "upgraded")  # the old merge runs on, with the new columns
        send_hits(url, run)
        before = stored_calls(url)
        database.prepare_database(url, seed=False)
        after = stored_calls(url)

    assert before["mapped"][:3] == (None, None, None), "the old merge should have lost the label (the issue)"
    assert expected["mapped"][:3] == ("Meeting Booked", "chosen", "booked")
    for call in expected:
        if call.split("@")[0] in FIXABLE:
            assert after[call][:3] == expected[call][:3], call
        else:
            assert after[call] == before[call], f"{call} was touched"  # updated_at included
    assert {call for call in after if after[call] != before[call]} == {
        call for call in before if call.split("@")[0] in FIXABLE}
