"""No secret in any log line of the test run: a pytest plugin (tests/conftest.py loads it) and its grep.

What is searched, at the end of the run, by tests/security/test_secrets_in_logs.py (moved to the very end):
  * every file in the log folder of every stack the run started (the session's `stack`, and the embedded
    stacks of tests/reliability, which call `watch_stack`): the functions' JSON lines, PostgREST, nginx,
    the GHL sandbox, moto, an embedded Postgres;
  * pytest's captured output of every test before it (stdout, stderr and log records of setup, call and
    teardown), collected here from the test reports.
What counts as a secret: the webhook and scheduler secrets of the tests, each stack's service-role key, JWT
secret, webhook and scheduler secrets, every api_token in each stack's ghl_integrations (of at least
MIN_SECRET_LENGTH characters: shorter test tokens such as "tok" would match ordinary words), each stack's
Anthropic stand-in key, and anything shaped like a GHL sandbox token or an Anthropic API key (sk-ant-...).
A finding names the secret by label and the file and line, never by its value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MIN_SECRET_LENGTH = 8
SECRET_SHAPES = {"a GHL sandbox token": re.compile(r"sandbox-token-[0-9a-f]{32}"),
                 "an Anthropic API key": re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}")}
SCAN_TEST_NAME = "test_no_secret_in_any_log_line_of_the_run"

_stacks: list[dict] = []
_sections: list[tuple[str, str, str]] = []  # (test node id, section name, captured text)


@dataclass(frozen=True)
class Leak:
    label: str  # which secret, never its value
    where: str  # a file or a test's captured section
    line: int

    def __str__(self) -> str:
        return f"{self.label} in {self.where}, line {self.line}"


def find_leaks(lines: Iterable[str], secrets: dict[str, str], where: str) -> Iterator[Leak]:
    """Every (secret label, line number) where a secret's value or a secret-shaped string occurs."""
    usable = {label: value for label, value in secrets.items() if value and len(value) >= MIN_SECRET_LENGTH}
    for number, line in enumerate(lines, start=1):
        for label, value in usable.items():
            if value in line:
                yield Leak(label, where, number)
        for label, shape in SECRET_SHAPES.items():
            if shape.search(line):
                yield Leak(label, where, number)


def scan_files(paths: Iterable[Path], secrets: dict[str, str]) -> list[Leak]:
    leaks = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            leaks.extend(find_leaks(handle, secrets, str(path)))
    return leaks


def scan_sections(sections: Iterable[tuple[str, str, str]], secrets: dict[str, str]) -> list[Leak]:
    leaks = []
    for node_id, name, text in sections:
        leaks.extend(find_leaks(text.splitlines(), secrets, f"{node_id} [{name}]"))
    return leaks


# ---- what the run registers ---------------------------------------------------------------------------

def watch_stack(info: dict) -> None:
    """Scan this stack's log folder at the end, and count its secrets and integration tokens as secrets."""
    if info not in _stacks:
        _stacks.append(info)


def watched_stacks() -> list[dict]:
    return list(_stacks)


def captured_sections() -> list[tuple[str, str, str]]:
    return list(_sections)


def stack_secrets(info: dict) -> dict[str, str]:
    secrets = {"the service-role key": info.get("service_role_key", ""),
               "the stack's webhook secret": info.get("ghl_webhook_secret", ""),
               "the stack's scheduler secret": info.get("scheduler_secret", ""),
               "the stack's Anthropic API key": info.get("anthropic_api_key") or ""}
    keys_file = Path(info["log_dir"]).parent / "keys.json"
    if keys_file.exists():
        secrets["the JWT secret"] = json.loads(keys_file.read_text()).get("jwt_secret", "")
    return secrets


def integration_tokens(database_url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT location_id, api_token FROM ghl_integrations").fetchall()
    return {f"the api_token of integration {location}": token for location, token in rows}


# ---- pytest hooks --------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    outcome = yield
    if fixturedef.argname == "stack" and outcome.excinfo is None:
        info = outcome.get_result()
        if isinstance(info, dict) and info.get("log_dir"):
            watch_stack(info)


def pytest_runtest_logreport(report) -> None:
    for name, text in report.sections:
        if text:
            _sections.append((report.nodeid, name, text))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """The scan sees everything only as the very last test."""
    scans = [item for item in items if item.name == SCAN_TEST_NAME]
    for item in scans:
        items.remove(item)
        items.append(item)


def remember_integration_tokens(info: dict) -> None:
    """For a stack torn down before the scan (its database gone): read its tokens now."""
    info["integration_tokens"] = integration_tokens(info["database_url"])
