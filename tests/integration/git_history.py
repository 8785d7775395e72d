"""The project's git history, read for the migration tests (earlier releases' migrations, main's landed files).

Every miss is a test failure that says what is missing (a shallow clone, a commit not fetched), never a skip:
these tests guard what a deployed database will get, so "could not check" must not look like "checked".
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import pytest

from ghl_bridge.paths import MIGRATIONS_DIR, PROJECT_ROOT

MIGRATIONS_PATH = MIGRATIONS_DIR.relative_to(PROJECT_ROOT).as_posix()  # supabase/migrations

# Versions the migration fold (f06d505) removed after databases made at 1097d79 had recorded them, restored as
# documented no-ops. A database made after the fold has not recorded them, and they sort before its newest
# version: `supabase db push` applies them only with --include-all (deploy.sh passes it; docs/deploy.md).
RESTORED_VERSIONS = frozenset({"20261126001200", "20261126004000"})


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def commit(ref: str) -> str:
    """The full id of `ref`; fails the test when this clone does not have it."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except RuntimeError:
        shallow = git("rev-parse", "--is-shallow-repository").strip() == "true"
        pytest.fail(f"commit {ref} is not in this clone's history"
                    + (" (a shallow clone: fetch the whole history, e.g. `git fetch --unshallow`, "
                       "or actions/checkout with fetch-depth: 0)" if shallow else ""), pytrace=False)


def migration_blobs(ref: str) -> dict[str, str]:
    """{file name: git blob id} of the migrations in commit `ref`."""
    blobs = {}
    for line in git("ls-tree", ref, f"{MIGRATIONS_PATH}/").splitlines():
        meta, path = line.split("\t", 1)
        if path.endswith(".sql"):
            blobs[PurePosixPath(path).name] = meta.split()[2]
    return blobs


def export_migrations(ref: str, folder: Path) -> list[str]:
    """Write the migrations of commit `ref` into `folder` (as that release had them). Returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(migration_blobs(ref))
    for name in names:
        (folder / name).write_bytes(subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "show", f"{ref}:{MIGRATIONS_PATH}/{name}"],
            capture_output=True, check=True).stdout)
    return names


def file_at(ref: str, path: Path) -> str | None:
    """The text of `path` (in this checkout) as commit `ref` had it, or None when it did not exist there."""
    relative = path.resolve().relative_to(PROJECT_ROOT).as_posix()
    try:
        return git("show", f"{ref}:{relative}")
    except RuntimeError:
        return None


def blob_id(path: Path) -> str:
    """The git blob id of a file in the working tree (what `git hash-object` says), compared with history."""
    return git("hash-object", "--", str(path)).strip()


def first_parent_history(ref: str) -> list[str]:
    """Commits of `ref`'s first-parent chain, oldest first: main's own commits (merges are `--no-ff`)."""
    return git("rev-list", "--first-parent", "--reverse", ref).split()
