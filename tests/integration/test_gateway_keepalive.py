"""The gateway lets go of an idle function connection before the functions' server closes it.

Otherwise a POST the gateway sends on a kept connection just as the server closes it is a 502 ("upstream
prematurely closed connection") that never reached the function: the call is lost. With nginx's default 60 s
against gunicorn's 2 s, bursts spaced 2 s apart lost about 7% of their calls (bench/bench_gateway_keepalive.py).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ghl_bridge.stack.gateway import render_nginx_conf
from tests.conftest import TEST_WEBHOOK_SECRET, unique


def functions_server_keepalive_seconds() -> float:
    """gunicorn's idle keep-alive as functions-framework configures it (the server the stack starts)."""
    from flask import Flask
    from functions_framework._http.gunicorn import GunicornApplication

    return GunicornApplication(Flask("probe"), "127.0.0.1", 0, False).cfg.keepalive


def test_every_function_upstream_lets_go_before_the_server_does(tmp_path):
    conf = render_nginx_conf(state_dir=tmp_path, port=1, postgrest_port=2, functions={"a": 3, "b": 4})
    upstreams = re.findall(r"upstream (\w+) \{([^}]*)\}", conf)
    functions = [body for name, body in upstreams if name.startswith("fn_")]
    assert len(functions) == 2
    server_keepalive = functions_server_keepalive_seconds()
    for body in functions:
        [timeout] = re.findall(r"keepalive_timeout (\d+)s;", body)
        assert int(timeout) < server_keepalive
    [postgrest] = [body for name, body in upstreams if name == "postgrest"]
    assert int(re.findall(r"keepalive_timeout (\d+)s;", postgrest)[0]) < 30  # warp's idle timeout


@pytest.mark.stack
def test_bursts_spaced_at_the_servers_idle_timeout_get_no_502(stack, db):
    """Rounds of concurrent POSTs, each after the kept connections have idled for about the server's timeout
    (just under it: the connections idle a little longer than the pause, while the burst ends). Against the
    old gateway (nginx's 60 s) about half the rounds had a 502."""
    location = unique("ka_loc")
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, 'token')", (location,))
    url = stack["functions"]["ghl-call-webhook"]
    headers = {"X-Webhook-Secret": TEST_WEBHOOK_SECRET}
    prefix, burst = unique("ka"), 32
    idle = functions_server_keepalive_seconds()
    pauses = [None, idle - 0.1, idle - 0.05, idle, idle - 0.05]
    rounds, statuses = len(pauses), []
    limits = httpx.Limits(max_connections=burst, max_keepalive_connections=burst)
    with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(burst) as pool:
        for round_, pause in enumerate(pauses):
            if pause:
                time.sleep(pause)
            ids = [f"{prefix}_{round_}_{n}" for n in range(burst)]
            statuses += pool.map(lambda call_id: client.post(
                url, json={"callId": call_id, "locationId": location}, headers=headers).status_code, ids)
    assert statuses.count(502) == 0 and statuses == [200] * (burst * rounds)
    stored = db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id LIKE %s",
                        (prefix + "%",)).fetchone()["n"]
    assert stored == burst * rounds
