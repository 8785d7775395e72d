"""The dependency locks: exact versions and hashes of everything the functions and the tools install.

    requirements.lock       the functions' run-time dependencies (pyproject's [project] dependencies and their
                            closure): each artifact's requirements.txt is the part of it that the function imports
    requirements-dev.lock   the same pins plus the dev tools ([project.optional-dependencies] dev), what .venv holds

Both are made by uv (`uv pip compile --universal --generate-hashes`): plain requirements files that pip installs
with --require-hashes, resolved once for every platform (the Linux runtime and a developer's Mac alike), with the
"# via" annotations this module reads to know which package needs which. The dev lock is compiled with the
run-time lock as its constraint, so what the tests run is what is deployed.

    ./ghl-bridge lock              refresh both after editing pyproject.toml (keeps every pin it can)
    ./ghl-bridge lock --upgrade    move every pin to the newest release the ranges allow
    ./ghl-bridge lock --check      exit 1, naming the problems, when a lock no longer matches pyproject.toml

Reading the locks is standard library only (the build step runs with any Python 3.11+); the --check of version
ranges uses `packaging`, which the dev environment has.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ghl_bridge.paths import PROJECT_ROOT

PYPROJECT = PROJECT_ROOT / "pyproject.toml"
RUNTIME_LOCK = PROJECT_ROOT / "requirements.lock"
DEV_LOCK = PROJECT_ROOT / "requirements-dev.lock"
REFRESH_COMMAND = "./ghl-bridge lock"
PROJECT_SOURCE = "ghl-bridge (pyproject.toml)"  # how uv names the project in a "# via" annotation
PYTHON_VERSION = "3.11"  # the oldest Python the project supports, and the functions' runtime (python311)

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$")
_HASH = re.compile(r"^\s+--hash=(?P<hash>\S+?)\s*\\?$")


class LockError(RuntimeError):
    """A lock file that is missing or unreadable."""


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (Pydantic_Settings == pydantic-settings)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    name: str  # normalised
    version: str
    marker: str | None = None
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # normalised names of what requires it, or PROJECT_SOURCE

    def requirement_lines(self) -> list[str]:
        """The pin as a requirements-file entry (hashes on continuation lines)."""
        head = f"{self.name}=={self.version}" + (f" ; {self.marker}" if self.marker else "")
        if not self.hashes:
            return [head]
        return [head + " \\"] + [f"    --hash={h}" + (" \\" if i < len(self.hashes) - 1 else "")
                                 for i, h in enumerate(self.hashes)]


def read_lock(path: Path = RUNTIME_LOCK) -> list[Pin]:
    """The pins of a uv/pip-tools style requirements lock, with their hashes and "# via" annotations."""
    if not path.is_file():
        raise LockError(f"{path.name} is missing: run `{REFRESH_COMMAND}`")
    pins: list[Pin] = []
    in_via = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            pins.append(Pin(normalise(match["name"]), match["version"], match["marker"]))
            in_via = False
        elif pins and (match := _HASH.match(line)):
            pins[-1].hashes.append(match["hash"])
        elif pins and (stripped := line.strip()).startswith("# via"):
            rest = stripped[len("# via"):].strip()
            in_via = not rest
            if rest:
                pins[-1].via.append(_via_name(rest))
        elif pins and in_via and line.strip().startswith("#   "):
            pins[-1].via.append(_via_name(line.strip()[1:].strip()))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise LockError(f"{path.name}: cannot read line {line!r}: run `{REFRESH_COMMAND}`")
        else:
            in_via = in_via and line.strip().startswith("#   ")
    if not pins:
        raise LockError(f"{path.name} has no pins: run `{REFRESH_COMMAND}`")
    return pins


def _via_name(text: str) -> str:
    return text if text == PROJECT_SOURCE or text.startswith(("-r ", "-c ")) else normalise(text)


def closure(pins: list[Pin], roots: set[str]) -> list[Pin]:
    """The pins of `roots` and of everything they need (per the "# via" annotations), in the lock's order."""
    needs: dict[str, set[str]] = {}
    for pin in pins:
        for parent in pin.via:
            needs.setdefault(parent, set()).add(pin.name)
    wanted, todo = set(), [normalise(root) for root in roots]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(needs.get(name, ()))
    known = {pin.name for pin in pins}
    if missing := sorted(wanted - known):
        raise LockError(f"not in the lock: {', '.join(missing)}: add to pyproject.toml and run `{REFRESH_COMMAND}`")
    return [pin for pin in pins if pin.name in wanted]


# ---- in sync with pyproject.toml ------------------------------------------------------------------

def _pyproject_requirements(pyproject: Path, extra: str | None) -> list[str]:
    with pyproject.open("rb") as file:
        project = tomllib.load(file).get("project", {})
    requirements = list(project.get("dependencies", []))
    if extra:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    return requirements


def check(pyproject: Path = PYPROJECT, runtime_lock: Path = RUNTIME_LOCK, dev_lock: Path = DEV_LOCK) -> list[str]:
    """Every way the locks no longer match pyproject.toml (empty when they do)."""
    from packaging.requirements import Requirement

    problems: list[str] = []
    locks = {}
    for path, extra in ((runtime_lock, None), (dev_lock, "dev")):
        try:
            pins = locks[path] = read_lock(path)
        except LockError as exc:
            problems.append(str(exc))
            continue
        requirements = [Requirement(text) for text in _pyproject_requirements(pyproject, extra)]
        wanted = {normalise(r.name) for r in requirements}
        direct = {pin.name for pin in pins if PROJECT_SOURCE in pin.via}
        if added := sorted(wanted - direct):
            problems.append(f"{path.name} lacks {', '.join(added)} (in pyproject.toml)")
        if removed := sorted(direct - wanted):
            problems.append(f"{path.name} still has {', '.join(removed)} as a dependency of the project "
                            "(no longer in pyproject.toml)")
        by_name = {}
        for pin in pins:
            by_name.setdefault(pin.name, []).append(pin)
        for requirement in requirements:
            for pin in by_name.get(normalise(requirement.name), []):
                if not requirement.specifier.contains(pin.version, prereleases=True):
                    problems.append(f"{path.name} pins {pin.name}=={pin.version}, outside pyproject's {requirement}")
        if unhashed := [pin.name for pin in pins if not pin.hashes]:
            problems.append(f"{path.name} has pins without hashes: {', '.join(unhashed)}")
    if len(locks) == 2:  # the dev lock must hold exactly the run-time pins (same versions, same files)
        dev = {(pin.name, pin.marker): pin for pin in locks[dev_lock]}
        for pin in locks[runtime_lock]:
            other = dev.get((pin.name, pin.marker))
            if other is None or (other.version, sorted(other.hashes)) != (pin.version, sorted(pin.hashes)):
                found = f"{other.name}=={other.version}" if other else "nothing"
                problems.append(f"{dev_lock.name} has {found} where {runtime_lock.name} pins {pin.name}=={pin.version}")
    if problems:
        problems.append(f"refresh the locks with `{REFRESH_COMMAND}` and commit them")
    return problems


# ---- refreshing ------------------------------------------------------------------------------------

def compile_commands(upgrade: bool = False, uv: list[str] | None = None) -> list[list[str]]:
    """The uv commands that write both locks (the dev lock constrained by the run-time one)."""
    uv = uv or [sys.executable, "-m", "uv"]
    common = ["pip", "compile", "pyproject.toml", "--universal", f"--python-version={PYTHON_VERSION}",
              "--generate-hashes", "--quiet", f"--custom-compile-command={REFRESH_COMMAND}"]
    if upgrade:
        common.append("--upgrade")
    return [
        [*uv, *common, f"--output-file={RUNTIME_LOCK.name}"],
        [*uv, *common, "--extra=dev", f"--constraint={RUNTIME_LOCK.name}", f"--output-file={DEV_LOCK.name}"],
    ]


def refresh(upgrade: bool = False) -> int:
    for command in compile_commands(upgrade):
        print("+ " + " ".join(command[2:] if command[1:3] == ["-m", "uv"] else command), file=sys.stderr)
        result = subprocess.run(command, cwd=PROJECT_ROOT)
        if result.returncode:
            return result.returncode
    problems = check()
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--upgrade", action="store_true", help="move every pin to the newest allowed release")
    mode.add_argument("--check", action="store_true", help="only check that the locks match pyproject.toml")


def run(args: argparse.Namespace) -> int:
    if not args.check:
        return refresh(args.upgrade)
    problems = check()
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if not problems:
        print(f"{RUNTIME_LOCK.name} and {DEV_LOCK.name} match pyproject.toml")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ghl_bridge.lock", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
