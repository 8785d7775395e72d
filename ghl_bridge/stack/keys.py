"""Supabase-style API keys: HS256 JWTs signed with the stack's JWT secret (as hosted Supabase issues them)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jwt


@dataclass(frozen=True)
class StackKeys:
    jwt_secret: str
    anon_key: str
    service_role_key: str
    webhook_secret: str
    scheduler_secret: str
    anthropic_api_key: str = ""  # the stack's key for its Anthropic stand-in (keys.json of older stacks lack it)


def api_key(jwt_secret: str, role: str) -> str:
    now = int(time.time())
    claims = {"role": role, "iss": "supabase-local", "iat": now, "exp": now + 10 * 365 * 24 * 3600}
    return jwt.encode(claims, jwt_secret, algorithm="HS256")


def new_keys() -> StackKeys:
    jwt_secret = secrets.token_urlsafe(48)  # PostgREST needs at least 32 characters
    return StackKeys(
        jwt_secret=jwt_secret,
        anon_key=api_key(jwt_secret, "anon"),
        service_role_key=api_key(jwt_secret, "service_role"),
        webhook_secret=secrets.token_urlsafe(32),
        scheduler_secret=secrets.token_urlsafe(32),
        anthropic_api_key=new_anthropic_api_key(),
    )


def new_anthropic_api_key() -> str:
    """Shaped like Anthropic's keys (sk-ant-...), so the secret scan's shape rule also finds it."""
    return "sk-ant-local-" + secrets.token_urlsafe(32)


def load_or_create_keys(path: Path) -> StackKeys:
    """Keys stay the same across restarts of one stack folder, so URLs and keys a user copied keep working."""
    if path.exists():
        keys = StackKeys(**json.loads(path.read_text()))
        if keys.anthropic_api_key:
            return keys
        keys = StackKeys(**{**asdict(keys), "anthropic_api_key": new_anthropic_api_key()})
    else:
        keys = new_keys()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(keys)))
    path.chmod(0o600)
    return keys
