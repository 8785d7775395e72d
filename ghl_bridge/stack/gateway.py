"""The gateway in front of PostgREST and the functions, shaped like hosted Supabase's URLs.

nginx: the one on PATH if there is one, otherwise Debian's package unpacked into the stack folder
(`apt-get download` + `dpkg -x`, no root needed).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def find_or_fetch_nginx(tools_dir: Path) -> Path:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    unpacked = tools_dir / "nginx" / "usr" / "sbin" / "nginx"
    if unpacked.exists():
        return unpacked
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise RuntimeError("nginx is needed for the local gateway: install it (e.g. `apt-get install nginx`)")
    download_dir = tools_dir / "debs"
    download_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "nginx"], cwd=download_dir, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deb = sorted(download_dir.glob("nginx_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(tools_dir / "nginx")], check=True)
    return unpacked


# nginx keeps an idle upstream connection for 60 s unless told otherwise, but the functions' server
# (functions-framework runs gunicorn's threaded worker, `keepalive` 2 s) closes it after about 2 s: a request
# nginx sends on a connection just as the server closes it fails with "upstream prematurely closed connection",
# a 502 for a POST nginx will not retry (non-idempotent), and the call is lost. So the gateway lets go first.
# tests/integration/test_gateway_keepalive.py checks the order against gunicorn's real setting.
FUNCTION_KEEPALIVE_TIMEOUT_S = 1
# The same for PostgREST: warp closes idle connections after 30 s (its slowloris timeout).
POSTGREST_KEEPALIVE_TIMEOUT_S = 20


def render_nginx_conf(*, state_dir: Path, port: int, postgrest_port: int, functions: dict[str, int],
                      extra_routes: dict[str, int] | None = None) -> str:
    temp = state_dir / "nginx"
    # One upstream per function with kept-alive connections: a new TCP connection per webhook costs
    # about 0.65 ms here, as much as half a PostgREST round trip.
    function_upstreams = "\n".join(
        f"""  upstream fn_{index} {{
    server 127.0.0.1:{fn_port};
    keepalive 32;
    keepalive_timeout {FUNCTION_KEEPALIVE_TIMEOUT_S}s;
  }}"""
        for index, (name, fn_port) in enumerate(sorted(functions.items()))
    )
    function_routes = "\n".join(
        f"""    location = /functions/v1/{name} {{
      proxy_pass http://fn_{index}/;
    }}"""
        for index, (name, fn_port) in enumerate(sorted(functions.items()))
    )
    extra = "\n".join(
        f"""    location {prefix} {{
      proxy_pass http://127.0.0.1:{target}/;
    }}"""
        for prefix, target in sorted((extra_routes or {}).items())
    )
    return f"""
worker_processes 2;
daemon off;
pid {state_dir}/nginx.pid;
error_log {state_dir}/logs/nginx-error.log warn;
events {{ worker_connections 2048; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  # The functions enforce their own, smaller body limits (and answer 413 themselves).
  client_max_body_size 4m;
  client_body_buffer_size 4m;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_read_timeout 600s;
  proxy_buffering off;
{function_upstreams}
  upstream postgrest {{
    server 127.0.0.1:{postgrest_port};
    keepalive 64;
    keepalive_timeout {POSTGREST_KEEPALIVE_TIMEOUT_S}s;
  }}
  server {{
    listen 127.0.0.1:{port};
    location /rest/v1/ {{
      proxy_pass http://postgrest/;
    }}
{function_routes}
{extra}
  }}
}}
"""
