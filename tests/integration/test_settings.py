"""shared.config.Settings reads the environment itself (pure unit tests: no stack).

It replaced pydantic-settings' BaseSettings (whose sources cost every cold start an import); these pin the
behaviour the functions relied on: names in any case, strings converted by type, arguments first, secrets
masked, a missing required setting refused.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import Settings


@pytest.fixture
def env(monkeypatch):
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "supabase_url", "GHL_WEBHOOK_SECRET",
                 "WEBHOOK_MAX_BODY_BYTES", "IMPORT_CREATE_UNMATCHED_PROSPECTS", "DATABASE_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUPABASE_URL", "https://ref.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "service-role-key-value")
    return monkeypatch


def test_values_come_from_the_environment_converted_by_type(env):
    env.setenv("WEBHOOK_MAX_BODY_BYTES", "1024")
    env.setenv("import_create_unmatched_prospects", "true")  # any case
    env.setenv("DATABASE_TIMEOUT_SECONDS", "2.5")
    settings = Settings()
    assert settings.supabase_url == "https://ref.supabase.co"
    assert settings.supabase_service_role_key.get_secret_value() == "service-role-key-value"
    assert (settings.webhook_max_body_bytes, settings.import_create_unmatched_prospects,
            settings.database_timeout_seconds) == (1024, True, 2.5)
    assert settings.ghl_webhook_secret is None and settings.phone_default_region == "US"  # defaults


def test_arguments_win_over_the_environment(env):
    env.setenv("WEBHOOK_MAX_BODY_BYTES", "1024")
    assert Settings(webhook_max_body_bytes=77).webhook_max_body_bytes == 77
    assert Settings(supabase_url="http://other").supabase_url == "http://other"


def test_secrets_are_masked_and_listed_for_the_log_filter(env):
    env.setenv("GHL_WEBHOOK_SECRET", "webhook-secret-value")
    settings = Settings()
    assert "webhook-secret-value" not in repr(settings) and "service-role-key-value" not in str(settings)
    assert sorted(settings.secret_values()) == ["service-role-key-value", "webhook-secret-value"]


def test_a_wrong_or_missing_value_is_refused_naming_the_setting(env):
    env.setenv("WEBHOOK_MAX_BODY_BYTES", "lots")
    with pytest.raises(ValidationError, match="webhook_max_body_bytes"):
        Settings()
    env.delenv("WEBHOOK_MAX_BODY_BYTES")
    env.delenv("SUPABASE_SERVICE_ROLE_KEY")
    with pytest.raises(ValidationError, match="supabase_service_role_key"):
        Settings()
