"""The build step: complete, self-contained, deterministic artifact folders (no stack needed)."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest

from ghl_bridge import build
from ghl_bridge.paths import PROJECT_ROOT, SHARED_DIR, function_folders


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_function_builds_with_main_shared_and_requirements(tmp_path):
    built = build.build_all(tmp_path)
    assert set(built) == set(function_folders()) and built
    shared_sources = {str(p.relative_to(SHARED_DIR)) for p in SHARED_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    for name, artifact in built.items():
        files = build.artifact_files(artifact)
        assert "main.py" in files and "requirements.txt" in files
        assert (artifact / "main.py").read_bytes() == (function_folders()[name] / "main.py").read_bytes()
        assert {f[len("shared/"):] for f in files if f.startswith("shared/") and f.endswith(".py")} == shared_sources
        assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
        assert not [f for f in files if f.startswith(("ghl_bridge/", "tests/", "bench/"))]


def test_requirements_are_pyprojects_runtime_dependencies(tmp_path):
    artifact = build.build_function(next(iter(function_folders())), tmp_path)
    lines = [line for line in (artifact / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as file:
        assert lines == tomllib.load(file)["project"]["dependencies"]
    assert any(line.startswith("functions-framework") for line in lines)


def test_rebuild_is_identical_and_removes_stale_files(tmp_path):
    name = next(iter(function_folders()))
    first = _tree_digest(build.build_function(name, tmp_path))
    (tmp_path / name / "stale.py").write_text("x = 1\n")
    (tmp_path / name / "shared" / "__pycache__").mkdir(exist_ok=True)
    second = _tree_digest(build.build_function(name, tmp_path))
    assert first == second
    assert not list(tmp_path.glob(".*.partial"))


def test_folder_name_and_dashed_name_both_work_and_unknown_is_refused(tmp_path):
    dashed = next(iter(function_folders()))
    assert build.build_function(dashed.replace("-", "_"), tmp_path).name == dashed
    with pytest.raises(build.BuildError, match="unknown function 'no-such-function'; known functions: "):
        build.build_function("no-such-function", tmp_path)


def test_an_import_from_outside_the_artifact_is_refused(tmp_path):
    (tmp_path / "main.py").write_text("import json\nfrom ghl_bridge.paths import PROJECT_ROOT\n")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "x.py").write_text("import tests.conftest\nfrom . import y\n")
    assert build._forbidden_imports(tmp_path) == ["main.py:2 imports ghl_bridge.paths",
                                                  "shared/x.py:1 imports tests.conftest"]


def test_cli_build_command(tmp_path, capsys):
    from ghl_bridge.cli import main

    assert main(["build", "--all", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in function_folders():
        assert f"built {name}" in out and (tmp_path / name / "main.py").is_file()
    assert main(["build", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown function 'nope'" in capsys.readouterr().err
