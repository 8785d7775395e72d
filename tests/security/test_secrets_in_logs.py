"""No token or secret in any log line of the whole test run (tests/security/secret_scan.py does the work).

The scan is the last test of the run (the plugin moves it there and the test checks it); a canary printed by an
earlier test proves that pytest's captured output really reaches the scan, and a pytest run in a subprocess
with a test that prints a secret proves that the scan fails the run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET
from tests.security.secret_scan import (
    MIN_SECRET_LENGTH, SCAN_TEST_NAME, captured_sections, find_leaks, integration_tokens, scan_files, scan_sections,
    stack_secrets, watched_stacks,
)

ROOT = Path(__file__).resolve().parents[2]
CANARY = f"secret-scan-canary-{uuid.uuid4().hex}"


# ---- the grep itself ---------------------------------------------------------------------------------

def test_find_leaks_names_the_secret_and_line_never_its_value():
    secrets = {"the webhook secret": "whsec-" + "a" * 20, "a short token": "tok"}
    lines = ["all fine", '{"message": "header was whsec-aaaaaaaaaaaaaaaaaaaa"}', "tok tok token", "[REDACTED]"]
    leaks = list(find_leaks(lines, secrets, "function.log"))
    assert [(leak.label, leak.where, leak.line) for leak in leaks] == [("the webhook secret", "function.log", 2)]
    assert "whsec-" not in str(leaks[0]) and str(leaks[0]) == "the webhook secret in function.log, line 2"
    assert len("tok") < MIN_SECRET_LENGTH  # too short to grep without matching ordinary words


def test_find_leaks_knows_sandbox_tokens_by_their_shape():
    line = "Authorization: Bearer sandbox-token-" + uuid.uuid4().hex
    assert [leak.label for leak in find_leaks([line], {}, "x")] == ["a GHL sandbox token"]
    assert list(find_leaks(["sandbox-token-short"], {}, "x")) == []


def test_find_leaks_knows_anthropic_keys_by_their_shape():
    line = "calling with x-api-key sk-ant-local-" + uuid.uuid4().hex
    assert [leak.label for leak in find_leaks([line], {}, "x")] == ["an Anthropic API key"]
    assert [leak.label for leak in find_leaks(["sk-ant-api03-" + "Ab_-" * 10], {}, "x")] == ["an Anthropic API key"]
    assert list(find_leaks(["sk-ant-short", "the sk-ant- prefix"], {}, "x")) == []


def test_scan_files_and_sections(tmp_path):
    secret = "scheduler-" + uuid.uuid4().hex
    (tmp_path / "a.log").write_text("one\ntwo " + secret + "\n")
    (tmp_path / "b.log").write_bytes(b"\xff\xfe not utf-8 \n" + secret.encode() + b"\n")
    leaks = scan_files(sorted(tmp_path.iterdir()), {"s": secret})
    assert [(Path(leak.where).name, leak.line) for leak in leaks] == [("a.log", 2), ("b.log", 2)]
    sections = [("tests/x.py::t", "Captured stdout call", f"ok\n{secret}\n")]
    assert [str(leak) for leak in scan_sections(sections, {"s": secret})] == [
        "s in tests/x.py::t [Captured stdout call], line 2"]


def test_a_run_whose_test_prints_a_secret_fails(tmp_path):
    """End to end in a subprocess: the plugin, the scan moved last, and a failing run (exit code 1)."""
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(f"""
        from tests.conftest import TEST_WEBHOOK_SECRET
        from tests.security.test_secrets_in_logs import {SCAN_TEST_NAME}  # collected first, must run last

        def test_prints_the_secret():
            print("debugging:", TEST_WEBHOOK_SECRET)
            open({str(tmp_path / "secret.txt")!r}, "w").write(TEST_WEBHOOK_SECRET)

        def test_harmless():
            print("nothing to see")
    """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-c", "/dev/null", "-p", "tests.security.secret_scan",
                          "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT),
                                                                                        "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 2 passed" in run.stdout and f"test_leaky.py::{SCAN_TEST_NAME}" in run.stdout
    assert "the tests' webhook secret in " in run.stdout
    assert "test_leaky.py::test_prints_the_secret [Captured stdout call], line 1" in run.stdout
    # the report names the secret and where it was, never its value
    assert (tmp_path / "secret.txt").read_text() not in run.stdout + run.stderr


def test_canary_printed_for_the_final_scan():
    print(CANARY)  # the final scan checks it saw this captured line


# ---- the scan of the whole run ---------------------------------------------------------------------------

def test_no_secret_in_any_log_line_of_the_run(request):
    items = request.session.items
    assert items[-1] is request.node, "the scan must be the last test of the run"

    secrets = {"the tests' webhook secret": TEST_WEBHOOK_SECRET, "the tests' scheduler secret": TEST_SCHEDULER_SECRET}
    files: list[Path] = []
    for info in watched_stacks():
        secrets.update(stack_secrets(info))
        tokens = info.get("integration_tokens")
        if tokens is None:
            try:
                tokens = integration_tokens(info["database_url"])
            except psycopg.OperationalError:
                pytest.fail(f"the database of the stack logging to {info['log_dir']} is gone: its tokens are unknown")
        secrets.update(tokens)
        files.extend(path for path in Path(info["log_dir"]).rglob("*") if path.is_file())

    sections = captured_sections()
    leaks = scan_files(files, secrets) + scan_sections(sections, secrets)
    assert not leaks, "secrets in log lines:\n" + "\n".join(map(str, leaks[:50]))

    # the scan was not blind: it read the canary's captured output, and the functions' logs where there were any
    canary_ran = any(item.name == "test_canary_printed_for_the_final_scan" for item in items)
    if canary_ran:
        assert any(CANARY in text for _, _, text in sections), "captured output did not reach the scan"
    for info in watched_stacks():
        webhook_log = Path(info["log_dir"]) / "function-ghl-call-webhook.log"
        assert webhook_log.exists()
    print(f"scanned {len(files)} log files, {len(sections)} captured sections, {len(secrets)} secrets")
