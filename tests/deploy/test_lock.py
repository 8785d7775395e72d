"""The dependency locks match pyproject.toml; a stale lock fails here with the command that refreshes it.

Offline and fast: the locks are read and compared with pyproject.toml (names, version ranges, hashes, the dev
lock holding the run-time pins), nothing is resolved again from the package index.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ghl_bridge import lock
from ghl_bridge.paths import PROJECT_ROOT


def test_the_locks_match_pyproject():
    problems = lock.check()
    assert problems == [], "\n".join(problems)


@pytest.fixture
def copies(tmp_path) -> tuple[Path, Path, Path]:
    """Copies of pyproject.toml and both locks, to break one at a time."""
    for path in (lock.PYPROJECT, lock.RUNTIME_LOCK, lock.DEV_LOCK):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "pyproject.toml", tmp_path / "requirements.lock", tmp_path / "requirements-dev.lock"


def _check(copies) -> list[str]:
    pyproject, runtime, dev = copies
    return lock.check(pyproject, runtime, dev)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_a_dependency_added_without_relocking_fails_with_the_refresh_command(copies):
    assert _check(copies) == []
    _edit(copies[0], '  "boto3>=1.34",', '  "boto3>=1.34",\n  "requests>=2.31",')
    problems = _check(copies)
    assert "requirements.lock lacks requests (in pyproject.toml)" in problems
    assert "requirements-dev.lock lacks requests (in pyproject.toml)" in problems
    assert problems[-1] == "refresh the locks with `./ghl-bridge lock` and commit them"


def test_a_dev_tool_added_without_relocking_fails_only_the_dev_lock(copies):
    _edit(copies[0], '  "pytest>=8",', '  "pytest>=8",\n  "pytest-xdist>=3",')
    problems = _check(copies)
    assert problems[0] == "requirements-dev.lock lacks pytest-xdist (in pyproject.toml)" and len(problems) == 2


def test_a_removed_dependency_and_a_range_the_pin_leaves_both_fail(copies):
    _edit(copies[0], '  "phonenumbers>=8.13",\n', "")
    _edit(copies[0], '"supabase>=2.16,<3"', '"supabase>=99"')
    problems = _check(copies)
    assert any(p.startswith("requirements.lock still has phonenumbers as a dependency of the project") for p in problems)
    supabase = next(pin for pin in lock.read_lock() if pin.name == "supabase")
    assert f"requirements.lock pins supabase=={supabase.version}, outside pyproject's supabase>=99" in problems


def test_the_dev_lock_must_hold_the_runtime_pins(copies):
    httpx = next(pin for pin in lock.read_lock() if pin.name == "httpx")
    _edit(copies[2], f"httpx=={httpx.version} ", "httpx==0.27.0 ")
    problems = _check(copies)
    assert f"requirements-dev.lock has httpx==0.27.0 where requirements.lock pins httpx=={httpx.version}" in problems


def test_a_missing_lock_and_a_pin_without_hashes_fail(copies):
    copies[1].unlink()
    assert _check(copies)[0] == "requirements.lock is missing: run `./ghl-bridge lock`"
    copies[2].write_text("# by hand\nhttpx==0.28.1\n    # via ghl-bridge (pyproject.toml)\n")
    assert "requirements-dev.lock has pins without hashes: httpx" in _check(copies)


def test_reading_a_lock_keeps_every_pin_marker_hash_and_parent():
    pins = lock.read_lock()
    entries = [line for line in lock.RUNTIME_LOCK.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert entries == [line for pin in pins for line in pin.requirement_lines()]
    for pin in pins:
        assert pin.hashes and all(h.startswith("sha256:") for h in pin.hashes)
        assert pin.via, pin.name
    direct = {pin.name for pin in pins if lock.PROJECT_SOURCE in pin.via}
    assert {"supabase", "functions-framework", "boto3"} <= direct
    assert "flask" in {pin.name for pin in lock.closure(pins, {"functions-framework"})}
    with pytest.raises(lock.LockError, match="not in the lock: no-such-package"):
        lock.closure(pins, {"no-such-package"})


def test_the_refresh_commands_are_uv_with_hashes_for_every_platform():
    runtime, dev = lock.compile_commands(uv=["uv"])
    for command in (runtime, dev):
        assert command[:4] == ["uv", "pip", "compile", "pyproject.toml"]
        assert {"--universal", "--generate-hashes", "--python-version=3.11"} <= set(command)
    assert "--output-file=requirements.lock" in runtime and "--extra=dev" not in runtime
    assert {"--extra=dev", "--constraint=requirements.lock", "--output-file=requirements-dev.lock"} <= set(dev)
    assert "--upgrade" in lock.compile_commands(upgrade=True, uv=["uv"])[0]
    for path in (lock.RUNTIME_LOCK, lock.DEV_LOCK):  # the header names the command that made it
        assert path.read_text().splitlines()[1].strip() == "#    ./ghl-bridge lock"
    assert (PROJECT_ROOT / "ghl-bridge").read_text().count("--require-hashes -r requirements-dev.lock") == 1
