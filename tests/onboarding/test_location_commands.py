"""`ghl-bridge location ...` as an operator runs it: the token checked with GHL before anything is stored, the
mapping proposed, idempotent adds, token rotation, bulk CSV, and the token kept out of argv, output and files."""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path

import pytest

from tests.conftest import unique
from tests.onboarding.conftest import integration

pytestmark = pytest.mark.stack

FIELDS = [{"id": "cf_linkedin", "name": "LinkedIn URL"}, {"id": "cf_title", "name": "Job Title"},
          {"id": "cf_colour", "name": "Favourite Colour"}]
CONFIG_COLUMNS = ("api_token", "name", "integration_type", "client_id", "is_active", "location_name", "time_zone",
                  "custom_field_mapping")


@pytest.fixture
def sandbox(ghl_sandbox):
    def make(**settings):
        return ghl_sandbox.create_location(name=settings.pop("name", f"Acme {uuid.uuid4().hex[:6]}"),
                                           timezone=settings.pop("timezone", "America/Chicago"),
                                           custom_fields=settings.pop("custom_fields", FIELDS), **settings)
    return make


def assert_token_hidden(run, token: str) -> None:
    assert token not in " ".join(run.argv)
    assert token not in run.stdout and token not in run.stderr


def test_add_checks_the_token_and_stores_name_time_zone_and_the_proposed_mapping(cli, db, sandbox):
    loc = sandbox(name="Acme Dental", timezone="America/Chicago")
    run = cli("location", "add", loc.id, "--json", stdin=loc.token + "\n")
    assert run.returncode == 0, run.stderr
    result = run.json()
    assert (result["outcome"], result["location_name"], result["time_zone"]) == ("inserted", "Acme Dental",
                                                                                 "America/Chicago")
    assert result["proposed"] == {"linkedin_url": "cf_linkedin", "contact_title": "cf_title"}
    assert set(result["unmatched_prospect_fields"]) == {"market_name", "source", "campaign"}
    assert result["unmatched_ghl_fields"] == [{"id": "cf_colour", "name": "Favourite Colour"}]
    assert result["setup"]["header"] == "X-Webhook-Secret"
    assert [w["name"] for w in result["setup"]["workflows"]] == ["Call Completed", "Disposition"]
    row = integration(db, loc.id)
    assert (row["api_token"], row["location_name"], row["time_zone"], row["name"], row["integration_type"],
            row["is_active"]) == (loc.token, "Acme Dental", "America/Chicago", "Acme Dental", "internal", True)
    assert row["custom_field_mapping"] == {"linkedin_url": "cf_linkedin", "contact_title": "cf_title"}
    assert row["token_checked_at"] is not None
    assert_token_hidden(run, loc.token)


def test_the_text_output_shows_the_mapping_what_is_unmatched_and_the_ghl_set_up(cli, sandbox, stack):
    loc = sandbox()
    run = cli("location", "add", loc.id, "--name", "Our Acme", stdin=loc.token)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "inserted" in out and "linkedin_url" in out and "cf_linkedin" in out
    assert "no GHL field found for: market_name, source, campaign" in out
    assert "Favourite Colour" in out
    assert stack["functions"]["ghl-call-webhook"] in out and "X-Webhook-Secret" in out
    assert '"Call Completed"' in out and '"Disposition"' in out and "disposition" in out
    assert f"ghl-bridge webhook test --location {loc.id}" in out
    assert_token_hidden(run, loc.token)


def test_a_token_of_another_location_is_refused_naming_both_and_nothing_is_stored(cli, db, sandbox):
    first, second = sandbox(), sandbox()
    assert cli("location", "add", first.id, stdin=first.token).returncode == 0
    run = cli("location", "add", second.id, "--json", stdin=first.token)
    assert run.returncode == 1
    error = run.json()["error"]
    assert error["code"] == "token_refused"
    assert second.id in error["message"] and first.id in error["message"]
    assert integration(db, second.id) is None
    assert_token_hidden(run, first.token)
    # a token of a location nobody stored: still refused, said to be another sub-account's
    third = sandbox()
    run = cli("location", "add", second.id, stdin=third.token)
    assert run.returncode == 1 and "another sub-account" in run.stderr and second.id in run.stderr
    assert integration(db, second.id) is None


def test_a_revoked_token_is_refused_and_nothing_is_stored(cli, db, sandbox, ghl_sandbox):
    loc = sandbox()
    revoked = loc.token
    ghl_sandbox.configure_location(loc.id, token=f"sandbox-token-{uuid.uuid4().hex}")  # the old one stops working
    run = cli("location", "add", loc.id, stdin=revoked)
    assert run.returncode == 1
    assert "revoked" in run.stderr and "401" in run.stderr and run.stdout == ""
    assert integration(db, loc.id) is None
    assert_token_hidden(run, revoked)


def test_adding_twice_changes_nothing(cli, db, sandbox):
    loc = sandbox()
    assert cli("location", "add", loc.id, "--json", stdin=loc.token).json()["outcome"] == "inserted"
    before = integration(db, loc.id)
    again = cli("location", "add", loc.id, "--json", stdin=loc.token)
    assert again.returncode == 0 and again.json()["outcome"] == "unchanged"
    after = integration(db, loc.id)
    assert {c: after[c] for c in CONFIG_COLUMNS} == {c: before[c] for c in CONFIG_COLUMNS}
    assert after["id"] == before["id"]
    assert db.execute("SELECT count(*) AS n FROM ghl_integrations WHERE location_id = %s",
                      (loc.id,)).fetchone()["n"] == 1


def test_add_keeps_a_mapping_set_by_hand_and_changes_the_type_only_when_asked(cli, db, sandbox):
    loc = sandbox()
    client_id = str(db.execute("INSERT INTO clients (name) VALUES (%s) RETURNING id", (unique("c"),)).fetchone()["id"])
    assert cli("location", "add", loc.id, "--client", client_id, stdin=loc.token).returncode == 0
    run = cli("location", "map", loc.id, "--field", "market_name=cf_colour", "--field", "linkedin_url=", "--json")
    assert run.returncode == 0, run.stderr
    assert run.json()["custom_field_mapping"] == {"contact_title": "cf_title", "market_name": "cf_colour"}
    # adding it again without a type keeps the client and the hand-made mapping (proposed entries fill the gaps)
    again = cli("location", "add", loc.id, "--json", stdin=loc.token).json()
    assert again["outcome"] == "updated"  # linkedin_url proposed again
    row = integration(db, loc.id)
    assert (row["integration_type"], str(row["client_id"])) == ("client", client_id)
    assert row["custom_field_mapping"] == {"contact_title": "cf_title", "market_name": "cf_colour",
                                           "linkedin_url": "cf_linkedin"}
    # a field the location does not have is refused, nothing changes
    bad = cli("location", "map", loc.id, "--field", "source=cf_nope")
    assert bad.returncode == 1 and "no such custom field" in bad.stderr
    assert integration(db, loc.id)["custom_field_mapping"] == row["custom_field_mapping"]
    # a client location needs a client id that exists
    other = sandbox()
    missing = cli("location", "add", other.id, "--client", str(uuid.uuid4()), stdin=other.token)
    assert missing.returncode == 1 and "no portal client has the id" in missing.stderr
    assert integration(db, other.id) is None


def test_rotate_token_keeps_the_old_token_when_the_new_one_fails(cli, db, sandbox, ghl_sandbox):
    loc, other = sandbox(), sandbox()
    assert cli("location", "add", loc.id, stdin=loc.token).returncode == 0
    checked = integration(db, loc.id)["token_checked_at"]
    for bad in (other.token, "not-a-token-" + uuid.uuid4().hex):
        run = cli("location", "rotate-token", loc.id, stdin=bad)
        assert run.returncode == 1 and "token" in run.stderr
        assert integration(db, loc.id)["api_token"] == loc.token
        assert_token_hidden(run, bad)
    new = f"sandbox-token-{uuid.uuid4().hex}"
    ghl_sandbox.configure_location(loc.id, token=new)
    run = cli("location", "rotate-token", loc.id, "--token-env", "NEW_GHL_TOKEN", "--json",
              env={"NEW_GHL_TOKEN": new})
    assert run.returncode == 0, run.stderr
    row = integration(db, loc.id)
    assert row["api_token"] == new and row["token_checked_at"] > checked
    assert_token_hidden(run, new)
    missing = cli("location", "rotate-token", unique("loc"), stdin=new)
    assert missing.returncode == 1 and "location add" in missing.stderr


def test_list_disable_and_enable(cli, db, sandbox):
    loc = sandbox(name="Listed Co")
    assert cli("location", "add", loc.id, stdin=loc.token).returncode == 0
    assert cli("location", "disable", loc.id).returncode == 0
    assert integration(db, loc.id)["is_active"] is False
    listed = cli("location", "list", "--json")
    assert listed.returncode == 0
    [row] = [r for r in listed.json()["locations"] if r["location_id"] == loc.id]
    assert (row["is_active"], row["location_name"], row["integration_type"]) == (False, "Listed Co", "internal")
    assert row["token_checked_at"] and row["last_webhook_at"] is None and "api_token" not in row
    assert loc.token not in listed.stdout
    assert cli("location", "enable", loc.id).returncode == 0
    table = cli("location", "list")
    assert loc.id in table.stdout and "Listed Co" in table.stdout and loc.token not in table.stdout
    assert cli("location", "disable", unique("loc")).returncode == 1


def write_csv(path: Path, rows: list[list[str]], mode: int = 0o600) -> Path:
    import csv

    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["id", "token", "name", "type", "client"], *rows])
    path.chmod(mode)
    return path


def test_csv_adds_the_good_rows_and_reports_the_bad_ones(cli, db, sandbox, home):
    good, revoked_loc, client_loc = sandbox(), sandbox(), sandbox()
    client_id = str(db.execute("INSERT INTO clients (name) VALUES (%s) RETURNING id", (unique("c"),)).fetchone()["id"])
    rows = [[good.id, good.token, "Good one", "internal", ""],
            [revoked_loc.id, "sandbox-token-" + uuid.uuid4().hex, "", "", ""],
            ["not a location id", good.token, "", "", ""],
            [client_loc.id, client_loc.token, "", "client", client_id],
            [unique("loc"), "", "", "", ""]]
    path = write_csv(home / "locations.csv", rows)
    run = cli("location", "add", "--from-csv", str(path))
    assert run.returncode == 1
    # one line per row as each finishes (rows are checked in parallel), each naming its line of the file
    lines = sorted((line for line in run.stdout.splitlines() if line.startswith("line ")),
                   key=lambda line: int(line.split()[1]))
    assert [int(line.split()[1]) for line in lines] == [2, 3, 4, 5, 6]
    assert "inserted" in lines[0] and "FAILED" in lines[1] and "token_refused" in lines[1]
    assert "FAILED" in lines[2] and "is not a GHL location id" in lines[2]
    assert "inserted" in lines[3] and "FAILED" in lines[4] and "no token" in lines[4]
    assert "2 of 5 row(s) added" in run.stdout
    assert integration(db, good.id)["name"] == "Good one"
    client_row = integration(db, client_loc.id)
    assert (client_row["integration_type"], str(client_row["client_id"])) == ("client", client_id)
    assert integration(db, revoked_loc.id) is None
    for token in (good.token, client_loc.token):
        assert_token_hidden(run, token)
    again = cli("location", "add", "--from-csv", str(path), "--json")
    result = again.json()
    assert (result["added"], result["failed"]) == (2, 3)
    assert [r.get("outcome") for r in result["rows"] if r["ok"]] == ["unchanged", "unchanged"]


def test_csv_readable_by_others_is_refused_with_the_fix(cli, db, sandbox, home):
    loc = sandbox()
    path = write_csv(home / "open.csv", [[loc.id, loc.token, "", "", ""]], mode=0o644)
    run = cli("location", "add", "--from-csv", str(path), "--json")
    assert run.returncode == 2
    assert f"chmod 600 {path}" in run.stderr and run.json()["ok"] is False
    assert integration(db, loc.id) is None


def test_the_token_never_reaches_argv_output_logs_or_files(cli, sandbox, home, stack):
    loc = sandbox()
    runs = [cli("location", "add", loc.id, stdin=loc.token),
            cli("location", "add", loc.id, "--json", "--token-env", "MY_GHL_TOKEN", env={"MY_GHL_TOKEN": loc.token}),
            cli("location", "list"), cli("location", "list", "--json"), cli("location", "map", loc.id, "--json"),
            cli("location", "rotate-token", loc.id, stdin=loc.token)]
    assert all(run.returncode == 0 for run in runs), [run.stderr[-500:] for run in runs if run.returncode]
    for run in runs:
        assert_token_hidden(run, loc.token)
    # nothing the commands left in the operator's home or working folder holds it (no history, no cache file)
    for path in home.rglob("*"):
        if path.is_file():
            assert loc.token not in path.read_text(errors="replace"), path
    # nor any log of the stack (the functions, PostgREST, the sandbox)
    for path in Path(stack["log_dir"]).rglob("*"):
        if path.is_file():
            assert loc.token not in path.read_text(errors="replace"), path
    # a token on the command line is not an option at all
    # a token on the command line (or a token given to --token-env, or --token abbreviating it) is refused, unshown
    for args in (["--token", loc.token], ["--token-env", loc.token], ["--token-e", "X"]):
        refused = cli("location", "add", unique("loc"), *args)
        assert refused.returncode == 2, refused.stderr
        assert loc.token not in refused.stdout + refused.stderr
    assert "never taken from the command line" in cli("location", "add", loc.id, "--token", loc.token).stderr


def test_after_add_and_the_printed_webhook_test_the_doctor_has_no_fail(cli, sandbox, webhook_secret_env):
    loc = sandbox()
    added = cli("location", "add", loc.id, "--json", stdin=loc.token)
    assert added.returncode == 0, added.stderr
    printed = added.json()["setup"]["test"]
    # hosted form: "GHL_WEBHOOK_SECRET=... ghl-bridge webhook test --location ID --url URL"
    words = shlex.split(printed)
    words = words[words.index("ghl-bridge") + 1:]
    assert words[:4] == ["webhook", "test", "--location", loc.id]
    test = cli(*words, env=webhook_secret_env)
    assert test.returncode == 0, test.stdout + test.stderr
    doctor = cli("doctor", "--location", loc.id, "--json")
    report = doctor.json()
    fails = [(g["name"], c["name"], c["detail"]) for location in report["locations"] for g in location["groups"]
             for c in g["checks"] if c["status"] == "FAIL"]
    assert fails == [] and doctor.returncode == 0
    [location] = report["locations"]
    webhooks = next(g for g in location["groups"] if g["name"] == "webhooks")
    assert webhooks["checks"][0]["status"] == "OK"  # the test's deliveries count as accepted
    listed = [r for r in cli("location", "list", "--json").json()["locations"] if r["location_id"] == loc.id]
    assert listed[0]["last_webhook_at"] is not None
