"""The build step: one self-contained artifact folder per function, ready for `gcloud functions deploy --source`.

    build/<function-name>/
        main.py            (and any other file of functions/<folder>/, caches excluded)
        shared/            the whole shared package, caches excluded
        requirements.txt   the exact pins (with hashes) from requirements.lock of what this function imports:
                           the third-party packages its modules reach from main.py, functions-framework
                           (which serves it), and everything those need, per the lock's "# via" annotations

Nothing from ghl_bridge/ or tests/ goes in, and a module of the artifact importing either is refused, as is one
importing a third-party package that the lock does not pin (add it to pyproject.toml, then `./ghl-bridge lock`).
A rebuild replaces the folder, so the same tree always gives the same files (stale ones disappear).
Standard library only: deploy.sh runs this with any Python 3.11+, before the project's venv exists.

    python -m ghl_bridge.build --all [--out DIR]
    python -m ghl_bridge.build ghl-call-webhook [--out DIR]
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
from pathlib import Path

from ghl_bridge import lock
from ghl_bridge.paths import PROJECT_ROOT, SHARED_DIR, function_folders

DEFAULT_OUT_DIR = PROJECT_ROOT / "build"
# Top-level packages that exist only in the checkout: an artifact importing one would fail when deployed.
FORBIDDEN_IMPORTS = ("ghl_bridge", "tests", "bench")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".DS_Store")


class BuildError(RuntimeError):
    """A function that does not exist, or an artifact that would not be self-contained."""


# Always installed: the server that runs `handle` (the code itself never imports it).
ALWAYS_REQUIRED = ("functions-framework",)
# Import names whose distribution is named otherwise (the rest: the import name, normalised, is the distribution).
IMPORT_ALIASES = {"jwt": "pyjwt", "dateutil": "python-dateutil", "yaml": "pyyaml"}


def _local_modules(artifact: Path) -> dict[str, Path]:
    """The artifact's own modules: dotted name -> file (packages by their __init__.py)."""
    modules = {}
    for path in artifact.rglob("*.py"):
        parts = path.relative_to(artifact).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if parts:
            modules[".".join(parts)] = path
    return modules


def _imported_names(path: Path, package: str) -> list[str]:
    """Every module name an import statement of the file may load (anywhere in it: lazy imports count too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return [name for name in names if name]


def imported_packages(artifact: Path, entry: str = "main") -> set[str]:
    """Top-level third-party import names reachable from the entry module through the artifact's own modules."""
    modules = _local_modules(artifact)
    local_tops = {name.split(".")[0] for name in modules}
    seen: set[str] = set()
    todo, external = [entry], set()
    while todo:
        module = todo.pop()
        if module in seen or module not in modules:
            continue
        seen.add(module)
        path = modules[module]
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name in _imported_names(path, package):
            parts = name.split(".")
            if parts[0] in local_tops:
                todo.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # packages run their __init__
            elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                external.add(parts[0])
    return external


def requirements_text(function_name: str, artifact: Path, lock_file: Path = lock.RUNTIME_LOCK) -> str:
    """requirements.txt of an artifact: the lock's pins of what it imports, functions-framework, and their needs."""
    pins = lock.read_lock(lock_file)
    pinned = {pin.name for pin in pins}
    roots = set(ALWAYS_REQUIRED)
    for top in sorted(imported_packages(artifact)):
        distribution = lock.normalise(IMPORT_ALIASES.get(top, top))
        if distribution not in pinned:
            raise BuildError(f"{function_name} imports {top}, which {lock_file.name} does not pin: add its package "
                             f"to pyproject.toml [project] dependencies and run `{lock.REFRESH_COMMAND}`")
        roots.add(distribution)
    header = (f"# Generated by ghl_bridge/build.py from {lock_file.name} for {function_name}: the pins of what it "
              "imports and of what those need; do not edit.\n")
    return header + "".join(line + "\n" for pin in lock.closure(pins, roots) for line in pin.requirement_lines())


def resolve_function(name: str) -> tuple[str, Path]:
    """A function by its deployed name (ghl-call-webhook) or its folder name (ghl_call_webhook)."""
    folders = function_folders()
    normalised = name.strip().replace("_", "-")
    if normalised not in folders:
        known = ", ".join(folders) or "none (functions/<folder>/main.py)"
        raise BuildError(f"unknown function {name!r}; known functions: {known}")
    return normalised, folders[normalised]


def _forbidden_imports(artifact: Path) -> list[str]:
    problems = []
    for path in sorted(artifact.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in FORBIDDEN_IMPORTS:
                    problems.append(f"{path.relative_to(artifact)}:{node.lineno} imports {module}")
    return problems


def build_function(name: str, out_dir: Path = DEFAULT_OUT_DIR) -> Path:
    """Build one function's artifact into out_dir/<function-name>/ (replacing it) and return that folder."""
    function_name, source = resolve_function(name)
    if (source / "shared").exists():
        raise BuildError(f"{source}/shared would shadow the shared package in the artifact")
    out_dir = Path(out_dir)
    artifact = out_dir / function_name
    staging = out_dir / f".{function_name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build next to the target and swap it in at the end: a failed build leaves the previous artifact whole.
    shutil.copytree(source, staging, ignore=_IGNORED)
    shutil.copytree(SHARED_DIR, staging / "shared", ignore=_IGNORED)
    problems = _forbidden_imports(staging)
    if problems:
        shutil.rmtree(staging)
        raise BuildError(f"{function_name} would not be self-contained: " + "; ".join(problems))
    try:
        requirements = requirements_text(function_name, staging)
    except (BuildError, lock.LockError) as exc:
        shutil.rmtree(staging)
        raise BuildError(str(exc)) from None
    (staging / "requirements.txt").write_text(requirements, encoding="utf-8")
    if artifact.exists():
        shutil.rmtree(artifact)
    os.replace(staging, artifact)
    return artifact


def build_all(out_dir: Path = DEFAULT_OUT_DIR) -> dict[str, Path]:
    names = list(function_folders())
    if not names:
        raise BuildError("no functions to build: no functions/<folder>/main.py")
    return {name: build_function(name, out_dir) for name in names}


def artifact_files(artifact: Path) -> list[str]:
    """The artifact's files, relative and sorted (for tests and reports)."""
    return sorted(str(p.relative_to(artifact)) for p in artifact.rglob("*") if p.is_file())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("function", nargs="?", help="a function name (ghl-call-webhook) or folder (ghl_call_webhook)")
    target.add_argument("--all", action="store_true", help="every function under functions/")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help=f"output folder (default {DEFAULT_OUT_DIR})")


def run(args: argparse.Namespace) -> int:
    try:
        if args.all:
            built = build_all(args.out)
        else:
            artifact = build_function(args.function, args.out)
            built = {artifact.name: artifact}
    except BuildError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    for name, artifact in built.items():
        print(f"built {name:<24} {artifact}  ({len(artifact_files(artifact))} files)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ghl_bridge.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
