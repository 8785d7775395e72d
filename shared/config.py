"""One settings object, read from the environment in one place (`bootstrap.get_settings`).

Secrets are SecretStr: they print as '**********' and are never logged.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class EnvSettings(BaseModel):
    """Each field from the environment variable of its name (any case); arguments win over the environment.

    What pydantic-settings' BaseSettings did for these flat fields (strings converted by pydantic as before),
    without importing its sources (.env, JSON/TOML/YAML, CLI, cloud secret stores) on every cold start."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        environment = {name.lower(): value for name, value in os.environ.items()}
        return {**{name: environment[name] for name in cls.model_fields if name in environment}, **values}


class Settings(EnvSettings):
    # Supabase (standard names)
    supabase_url: str = Field(description="Project URL, e.g. https://<ref>.supabase.co")
    supabase_service_role_key: SecretStr
    database_timeout_seconds: float = 10.0

    # GHL API
    ghl_api_base_url: str = "https://services.leadconnectorhq.com"
    ghl_request_timeout_seconds: float = 30.0
    ghl_daily_budget_reserve: int = Field(1000, description="requests of the daily budget never spent")
    ghl_max_in_flight: int = Field(16, description="concurrent requests per location")

    # Webhook authentication
    ghl_webhook_secret: SecretStr | None = None
    ghl_webhook_rsa_public_key: str | None = Field(None, description="PEM, for x-wh-signature (RSA-SHA256)")
    ghl_webhook_ed25519_public_key: str | None = Field(None, description="PEM, for x-ghl-signature (Ed25519)")
    webhook_max_body_bytes: int = 256 * 1024
    webhook_max_age_seconds: int = Field(300, description="older signed deliveries are rejected as replays")

    # Scheduler-facing functions (sync, import): Authorization: Bearer <SCHEDULER_SECRET or service role key>
    scheduler_secret: SecretStr | None = None

    # Normalisation
    phone_default_region: str = "US"

    # Sync
    sync_custom_field_value_key: str = Field("value", description="item key of customFields on write: value | field_value")
    sync_deadline_seconds: float = Field(500.0, description="stop claiming work after this long (platform timeout 540 s)")
    sync_lease_seconds: int = 120
    sync_max_attempts_backoff_seconds: int = 3600

    # Import
    import_page_size: int = 500
    import_chunk_size: int = 500
    import_deadline_seconds: float = 500.0
    import_create_unmatched_prospects: bool = False

    # Spool (S3 API: Supabase Storage's S3 endpoint or any S3-compatible store)
    spool_s3_endpoint_url: str | None = None
    spool_s3_bucket: str | None = None
    spool_s3_region: str = "us-east-1"
    spool_s3_prefix: str = "ghl-webhook-spool/"

    # Call enrichment: transcripts and recordings from GHL's Conversations API (docs/enrichment.md)
    enrich_deadline_seconds: float = Field(500.0, description="stop claiming calls after this long (platform timeout 540 s)")
    enrich_lease_seconds: int = Field(300, description="a claimed call is claimable again after this long")
    enrich_horizon_hours: float = Field(24.0, description="after this long without a transcript/recording: unavailable")
    enrich_backoff_base_seconds: int = Field(60, description="first wait after 'not ready'; doubles each attempt")
    enrich_backoff_cap_seconds: int = Field(3600, description="longest wait between attempts")
    recordings_enabled: bool = Field(True, description="download recordings into object storage (false: keep in GHL)")
    recordings_s3_bucket: str = "call-recordings"
    recordings_s3_endpoint_url: str | None = Field(None, description="default: SPOOL_S3_ENDPOINT_URL (one store)")
    recordings_s3_region: str | None = Field(None, description="default: SPOOL_S3_REGION")
    recordings_memory_bytes: int = Field(256 * 1024, description="a download larger than this goes to a temp file")

    # Fan-out on Cloud Tasks (shared/services/fanout.py, docs/deploy.md "Fan-out"). Without CLOUD_TASKS_PROJECT
    # a scheduled run cannot dispatch ({"dispatch": true} is refused) and runs every location in one process.
    cloud_tasks_api_url: str = Field("https://cloudtasks.googleapis.com", description="locally: the stand-in")
    cloud_tasks_project: str | None = None
    cloud_tasks_location: str | None = Field(None, description="the queues' region (default: the project's)")
    cloud_tasks_queue_prefix: str = Field("ghl-bridge-", description="queue of a job = prefix + job, e.g. ghl-bridge-sync")
    cloud_tasks_invoker_email: str | None = Field(
        None, description="service account whose OIDC token the tasks carry (None: the local stand-in's token)")
    functions_base_url: str | None = Field(
        None, description="tasks' target: <this>/<function name>, e.g. https://<region>-<project>.cloudfunctions.net")
    fanout_lease_seconds: int = Field(60, description="a location's job lease; renewed every third of it")
    fanout_dispatch_concurrency: int = Field(16, description="task creations in flight at once")
    sync_slot_seconds: int = Field(300, description="one sync task per location per slot (the schedule's period)")
    enrich_slot_seconds: int = 300
    import_slot_seconds: int = 60
    analysis_slot_seconds: int = Field(300, description="one analyze task per location per slot")

    # Private batch functions (deploy.sh): Google's front end has checked the caller's OIDC token and its
    # invoker role before the request arrives; the function accepts a token whose claims name this account.
    trusted_invoker_email: str | None = None
    # Call analysis with Claude (docs/analysis.md)
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = Field(None, description="default: the SDK's (https://api.anthropic.com)")
    anthropic_model: str = Field("claude-sonnet-4-5-20250929", description="the model the replaced system used")
    analysis_max_tokens: int = Field(2048, description="max_tokens of one analysis (the answer is ~400-700 tokens)")
    analysis_max_in_flight: int = Field(16, description="requests open at once over all locations (pacing decides "
                                                        "the rate)")
    analysis_request_timeout_seconds: float = 120.0
    analysis_deadline_seconds: float = Field(500.0, description="stop claiming calls after this long")
    analysis_lease_seconds: int = Field(900, description="a claimed call is claimable again after this long (longer "
                                                         "than a run: calls wait in the rate limit's line)")
    analysis_backoff_base_seconds: int = Field(60, description="first wait after a transient failure; doubles")
    analysis_backoff_cap_seconds: int = 3600
    analysis_max_attempts: int = Field(8, description="transient failures before a call is failed")
    analysis_batch_threshold: int = Field(200, description="more calls due than this at a location: one Message "
                                                           "Batch (half price, within 24 h); 0: never")
    analysis_batch_max_requests: int = Field(5000, description="calls per Message Batch")
    analysis_price_input_per_mtok: float = Field(3.0, description="USD per million input tokens (Sonnet 4.5)")
    analysis_price_output_per_mtok: float = Field(15.0, description="USD per million output tokens (Sonnet 4.5)")
    analysis_batch_price_factor: float = Field(0.5, description="Message Batches cost this share of the price")

    log_level: str = "INFO"

    def secret_values(self) -> list[str]:
        """Every secret value, so the log filter can mask one that slips into a message."""
        values = [self.supabase_service_role_key, self.ghl_webhook_secret, self.scheduler_secret,
                  self.anthropic_api_key]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
