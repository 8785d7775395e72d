"""Migrations are append-only: a landed file is never changed or removed, and a new one sorts after them all.

A database applies a migration once, by its version (`supabase db push`, deploy.sh, the local stack), so an
edit to a landed file never reaches a database made before it (issue 20: the merge kept ignoring location
disposition names on upgraded databases), and `supabase db push` refuses, without --include-all, a new file
whose version sorts before the newest one a project has applied. A change to the schema or a SQL function is
a new migration (CREATE OR REPLACE, or drop and create when the signature changes; docs/deploy.md).

Checked against git history rather than a committed manifest of checksums. History is the record the rule is
about and cannot be edited together with the file: a manifest would have to be kept by hand (or a command),
and an edit to a landed migration would come with an edit to its checksum line in the same commit, which only
a check of the manifest against history again would catch. The cost: the check needs the history, which CI's
clone has (a shallow clone fails saying so, it never skips).

"Landed" means: in a commit of main's first-parent history (merges to main are `git merge --no-ff`, so that
chain is main's own states, one per merge) from START on. Before START the history already holds a fold of
migrations (f06d505) and edits to landed files (e25e84e, 2c487d9, 756fe22); 20261204000100 repairs what they
did to databases made earlier (tests/integration/test_migration_upgrades.py proves it), and the two versions
the fold removed are back as no-ops (git_history.RESTORED_VERSIONS: older than the newest landed version,
accepted once). The test that each SQL function was defined in one migration is gone (redefining a function in
a new migration is the way to change it now); tests/integration/test_migration_upgrades.py keeps what it
protected: no stale definition survives in any database, whatever redefinitions it went through.
On main, the landed commits are those before HEAD (HEAD's new files are the ones under review); on a branch,
those of main up to where the branch left it (`main`, or else `origin/main`; without either, HEAD's own
first-parent history before HEAD).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from ghl_bridge.paths import MIGRATIONS_DIR
from tests.integration import git_history

START = "3387666"
# deploy.sh's rule for a migration's name (<version>_<name>.sql); the supabase CLI takes the digits as version.
FILE_NAME = re.compile(r"(?P<version>[0-9]+)_[a-z0-9_]+\.sql")


@dataclass(frozen=True)
class Landed:
    blob: str  # git blob id of the file as it landed
    commit: str  # the first main commit that had it


def version_of(name: str) -> str:
    return name.partition("_")[0]


def append_only_violations(landed: dict[str, Landed], current: dict[str, str],
                           restored: frozenset[str] = git_history.RESTORED_VERSIONS) -> list[str]:
    """What breaks the rule, one line each. landed: file name -> how it landed; current: file name -> blob id."""
    problems = []
    for name, was in sorted(landed.items()):
        if name not in current:
            problems.append(f"removed: {name} (landed in {was.commit[:7]}; bring it back as it was)")
        elif current[name] != was.blob:
            problems.append(f"changed: {name} (landed in {was.commit[:7]}; `git diff {was.commit[:7]} -- "
                            f"{git_history.MIGRATIONS_PATH}/{name}` shows how; undo it and put the change in "
                            "a new migration)")
    newest = max((version_of(name) for name in landed), default="")
    for name in sorted(set(current) - set(landed)):
        if version_of(name) <= newest and version_of(name) not in restored:
            problems.append(f"out of order: {name} sorts before {newest}, the newest landed version "
                            "(`supabase db push` refuses it without --include-all): give it a later version")
    by_version: dict[str, list[str]] = {}
    for name in current:
        by_version.setdefault(version_of(name), []).append(name)
    problems += [f"one version, several files: {sorted(names)}" for names in by_version.values() if len(names) > 1]
    problems += [f"not <version>_<name>.sql (lower case, digits, underscores): {name}"
                 for name in sorted(current) if not FILE_NAME.fullmatch(name)]
    return problems


def main_ref() -> str | None:
    for ref in ("main", "origin/main"):
        try:
            return git_history.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        except RuntimeError:
            continue
    return None


def landed_tip() -> str:
    """The newest main commit before HEAD's own work: see the module's docstring."""
    head = git_history.commit("HEAD")
    main = main_ref()
    if main is None:
        chain = git_history.first_parent_history(head)
        if len(chain) < 2:
            pytest.fail("HEAD has no earlier commit: no landed migrations to compare with", pytrace=False)
        return chain[-2]
    ancestors = set(git_history.git("rev-list", head).split())
    for commit in reversed(git_history.first_parent_history(main)):
        if commit != head and commit in ancestors:
            return commit
    pytest.fail(f"no commit of main's history ({main[:7]}) is an ancestor of HEAD", pytrace=False)


def landed_migrations() -> dict[str, Landed]:
    start = git_history.commit(START)
    chain = git_history.first_parent_history(landed_tip())
    if start not in chain:
        pytest.fail(f"{START}, where the append-only rule starts, is not in main's first-parent history here "
                    "(a shallow clone? fetch the whole history)", pytrace=False)
    landed: dict[str, Landed] = {}
    for commit in chain[chain.index(start):]:
        for name, blob in git_history.migration_blobs(commit).items():
            landed.setdefault(name, Landed(blob, commit))
    return landed


def test_landed_migrations_are_unchanged_and_new_ones_sort_after_them():
    landed = landed_migrations()
    assert landed, f"no migrations found in main's history since {START}"
    current = {path.name: git_history.blob_id(path) for path in sorted(MIGRATIONS_DIR.glob("*.sql"))}
    problems = append_only_violations(landed, current)
    assert not problems, "migrations are append-only (docs/deploy.md):\n  " + "\n  ".join(problems)


# The rule itself, on made-up histories: each way to break it is caught, the normal ways pass.

LANDED = {"20261126000100_create_tables.sql": Landed("a" * 40, "c" * 40),
          "20261202022000_add_check.sql": Landed("b" * 40, "d" * 40)}
AS_LANDED = {name: was.blob for name, was in LANDED.items()}


def test_unchanged_history_with_a_later_migration_passes():
    assert append_only_violations(LANDED, {**AS_LANDED, "20261204010000_add_thing.sql": "e" * 40}) == []


def test_a_changed_landed_migration_fails_naming_it():
    [problem] = append_only_violations(LANDED, {**AS_LANDED, "20261202022000_add_check.sql": "f" * 40})
    assert problem.startswith("changed: 20261202022000_add_check.sql (landed in ddddddd")


def test_a_removed_landed_migration_fails_naming_it():
    current = {"20261126000100_create_tables.sql": "a" * 40}
    assert append_only_violations(LANDED, current) == [
        "removed: 20261202022000_add_check.sql (landed in ddddddd; bring it back as it was)"]


def test_a_renamed_landed_migration_is_a_removal():
    current = {"20261126000100_create_tables.sql": "a" * 40, "20261202022000_add_checks.sql": "b" * 40}
    problems = append_only_violations(LANDED, current)
    assert problems[0].startswith("removed: 20261202022000_add_check.sql")
    assert problems[1].startswith("out of order: 20261202022000_add_checks.sql")


def test_a_new_migration_older_than_the_newest_landed_fails():
    [problem] = append_only_violations(LANDED, {**AS_LANDED, "20261202021500_add_late.sql": "e" * 40})
    assert problem.startswith("out of order: 20261202021500_add_late.sql sorts before 20261202022000")


def test_only_the_restored_versions_may_come_back_older():
    restored = {**AS_LANDED, "20261126001200_speed_up_call_merge.sql": "e" * 40,
                "20261126004000_add_spool_replay_to_webhook_ingest.sql": "f" * 40}
    assert append_only_violations(LANDED, restored) == []
    assert append_only_violations(LANDED, restored, restored=frozenset())[0].startswith("out of order: 20261126001200")


def test_two_files_of_one_version_and_bad_names_fail():
    problems = append_only_violations(LANDED, {**AS_LANDED, "20261204010000_a.sql": "e" * 40,
                                               "20261204010000_b.sql": "f" * 40, "20261204020000_Bad-Name.sql": "0"})
    assert problems == ["one version, several files: ['20261204010000_a.sql', '20261204010000_b.sql']",
                        "not <version>_<name>.sql (lower case, digits, underscores): 20261204020000_Bad-Name.sql"]
