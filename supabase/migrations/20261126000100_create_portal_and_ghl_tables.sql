-- Core schema of the Client Portal tables the bundle reads and writes, and the three GHL tables.
-- Valid on PostgreSQL 15 (hosted Supabase); applied with `supabase db push`.

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------

-- Keeps updated_at true whoever writes the row (the portal's web app writes some tables directly).
CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;

-- E.164 for matching. The portal writes phones as people type them ("(555) 010-2233"), so the
-- database derives the match key itself. Numbers without a country code are taken as NANP (+1),
-- the default region of the Python side (PHONE_DEFAULT_REGION=US); anything that cannot be read
-- as a phone number gives NULL (never a wrong match).
CREATE OR REPLACE FUNCTION public.normalize_phone_e164(raw text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN raw IS NULL THEN NULL
    WHEN btrim(raw) LIKE '+%' THEN
      CASE WHEN length(d) BETWEEN 8 AND 15 AND d NOT LIKE '0%' THEN '+' || d END
    WHEN length(d) = 10 AND d ~ '^[2-9]' THEN '+1' || d
    WHEN length(d) = 11 AND d LIKE '1%' THEN '+' || d
    WHEN length(d) BETWEEN 12 AND 15 AND d LIKE '00%' THEN '+' || substr(d, 3)
  END
  FROM (SELECT regexp_replace(split_part(lower(raw), 'x', 1), '[^0-9]', '', 'g') AS d) AS digits
$$;

CREATE OR REPLACE FUNCTION public.normalize_email(raw text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT nullif(lower(btrim(raw)), '')
$$;

-- ---------------------------------------------------------------------------------------------
-- Portal tables (minimal but real: the columns the flows need)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE public.clients (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE public.sales_prospects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  first_name text,
  last_name text,
  company_name text,
  email text,
  phone text,
  contact_title text,
  linkedin_url text,
  market_name text,
  source text,
  tags text[] NOT NULL DEFAULT '{}',
  campaign text,
  -- Match keys, derived by the database from what the portal wrote.
  phone_e164 text GENERATED ALWAYS AS (public.normalize_phone_e164(phone)) STORED,
  email_normalized text GENERATED ALWAYS AS (public.normalize_email(email)) STORED,
  ghl_contact_id text,
  ghl_location_id text,
  ghl_synced_at timestamptz,
  -- Sync bookkeeping: content_updated_at moves only when a field pushed to GHL changes, so the
  -- bundle's own write-backs never make a prospect look edited.
  content_updated_at timestamptz NOT NULL DEFAULT now(),
  ghl_sync_attempts integer NOT NULL DEFAULT 0,
  ghl_sync_error text,
  ghl_sync_next_attempt_at timestamptz,
  ghl_sync_claimed_until timestamptz,
  ghl_sync_claim_id uuid,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

CREATE TABLE public.contacts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id uuid NOT NULL REFERENCES public.clients (id) ON DELETE CASCADE,
  first_name text,
  last_name text,
  company_name text,
  email text,
  phone text,
  contact_title text,
  linkedin_url text,
  source text,
  tags text[] NOT NULL DEFAULT '{}',
  campaign text,
  phone_e164 text GENERATED ALWAYS AS (public.normalize_phone_e164(phone)) STORED,
  email_normalized text GENERATED ALWAYS AS (public.normalize_email(email)) STORED,
  ghl_contact_id text,
  ghl_location_id text,
  ghl_synced_at timestamptz,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- GHL tables (columns of the specification kept exactly; additions marked)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE public.ghl_integrations (
  id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  location_id text NOT NULL UNIQUE,
  api_token text NOT NULL,
  name text,
  is_active boolean DEFAULT true,
  custom_field_mapping jsonb,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  -- additions
  integration_type text NOT NULL DEFAULT 'internal',
  client_id uuid REFERENCES public.clients (id),
  last_synced_at timestamptz,
  last_sync_status text,
  last_sync_error text,
  CONSTRAINT ghl_integrations_integration_type_check CHECK (integration_type IN ('internal', 'client')),
  CONSTRAINT ghl_integrations_client_required_check CHECK (integration_type <> 'client' OR client_id IS NOT NULL),
  CONSTRAINT ghl_integrations_last_sync_status_check CHECK (last_sync_status IN ('success', 'partial', 'failed')),
  CONSTRAINT ghl_integrations_mapping_is_object_check
    CHECK (custom_field_mapping IS NULL OR jsonb_typeof(custom_field_mapping) = 'object')
);

CREATE TABLE public.ghl_import_batches (
  id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  location_id text NOT NULL,
  status text DEFAULT 'pending',
  total_records integer,
  processed_records integer DEFAULT 0,
  error_count integer DEFAULT 0,
  created_by uuid REFERENCES auth.users (id),
  completed_at timestamptz,
  created_at timestamptz DEFAULT now(),
  -- additions: what the pull asked for, where it stands, why a batch failed
  kinds text[] NOT NULL DEFAULT '{contacts,calls}',
  since timestamptz,
  pull_state jsonb NOT NULL DEFAULT '{}'::jsonb,
  pull_completed_at timestamptz,
  failure_reason text,
  updated_at timestamptz DEFAULT now(),
  -- what the pull noticed but did not fail on (a list that ended before GHL's total), newest last
  warnings jsonb NOT NULL DEFAULT '[]'::jsonb,
  CONSTRAINT ghl_import_batches_status_check CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
  CONSTRAINT ghl_import_batches_kinds_check CHECK (kinds <@ ARRAY['contacts', 'calls']::text[])
);

CREATE TABLE public.ghl_import_staging (
  id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  batch_id uuid NOT NULL REFERENCES public.ghl_import_batches (id) ON DELETE CASCADE,
  raw_data jsonb NOT NULL,
  status text DEFAULT 'pending',
  error_message text,
  matched_prospect_id uuid REFERENCES public.sales_prospects (id) ON DELETE SET NULL,
  matched_contact_id uuid REFERENCES public.contacts (id) ON DELETE SET NULL,
  created_at timestamptz DEFAULT now(),
  -- additions: what the record is, its GHL id (a re-pulled page stages nothing twice), claims
  record_kind text NOT NULL DEFAULT 'contact',
  external_id text,
  claimed_until timestamptz,
  processed_at timestamptz,
  CONSTRAINT ghl_import_staging_status_check
    CHECK (status IN ('pending', 'matched', 'imported', 'error', 'skipped')),
  CONSTRAINT ghl_import_staging_record_kind_check CHECK (record_kind IN ('contact', 'call'))
);

-- ---------------------------------------------------------------------------------------------
-- Calls: sales_calls for internal locations (linked to prospects), calls for client locations
-- (linked to the client's contacts). Same columns; one row per GHL call id.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE public.sales_calls (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  external_call_id text NOT NULL UNIQUE,
  prospect_id uuid REFERENCES public.sales_prospects (id) ON DELETE SET NULL,
  ghl_location_id text,
  ghl_contact_id text,
  direction text,
  from_number text,
  to_number text,
  call_status text,
  connected boolean,
  duration_seconds integer,
  started_at timestamptz,
  disposition text,
  disposition_source text,
  notes text,
  transcript text,
  recording_url text,
  raw_payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT sales_calls_disposition_check CHECK (disposition IN (
    'No Answer', 'Voicemail', 'Gatekeeper', 'Incorrect Number', 'Not Interested',
    'Callback Requested', 'Future Potential', 'Meeting Booked', 'Do Not Contact')),
  CONSTRAINT sales_calls_disposition_source_check CHECK (disposition_source IN ('chosen', 'inferred')),
  CONSTRAINT sales_calls_duration_check CHECK (duration_seconds >= 0)
);

CREATE TABLE public.calls (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  external_call_id text NOT NULL UNIQUE,
  contact_id uuid REFERENCES public.contacts (id) ON DELETE SET NULL,
  client_id uuid REFERENCES public.clients (id) ON DELETE SET NULL,
  ghl_location_id text,
  ghl_contact_id text,
  direction text,
  from_number text,
  to_number text,
  call_status text,
  connected boolean,
  duration_seconds integer,
  started_at timestamptz,
  disposition text,
  disposition_source text,
  notes text,
  transcript text,
  recording_url text,
  raw_payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(),
  CONSTRAINT calls_disposition_check CHECK (disposition IN (
    'No Answer', 'Voicemail', 'Gatekeeper', 'Incorrect Number', 'Not Interested',
    'Callback Requested', 'Future Potential', 'Meeting Booked', 'Do Not Contact')),
  CONSTRAINT calls_disposition_source_check CHECK (disposition_source IN ('chosen', 'inferred')),
  CONSTRAINT calls_duration_check CHECK (duration_seconds >= 0)
);

-- Append-only log of every webhook delivery, accepted or not (nothing received is lost).
CREATE TABLE public.ghl_webhook_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  received_at timestamptz NOT NULL DEFAULT now(),
  location_id text,
  call_id text,
  payload jsonb,
  raw_body text,
  outcome text NOT NULL,
  error text,
  call_row_id uuid,
  -- the spool object this event was replayed from (NULL: received directly)
  spool_key text,
  -- a rejected body's exact bytes, when raw_body cannot hold them verbatim (invalid UTF-8, NUL)
  raw_body_bytes bytea,
  CONSTRAINT ghl_webhook_events_outcome_check
    CHECK (outcome IN ('inserted', 'updated', 'unchanged', 'rejected', 'unknown_location'))
);

CREATE OR REPLACE FUNCTION public.forbid_change_of_append_only_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER ghl_webhook_events_append_only
  BEFORE UPDATE OR DELETE ON public.ghl_webhook_events
  FOR EACH ROW EXECUTE FUNCTION public.forbid_change_of_append_only_row();

-- ---------------------------------------------------------------------------------------------
-- updated_at triggers; content_updated_at for prospects (what sync pushes)
-- ---------------------------------------------------------------------------------------------

CREATE TRIGGER clients_set_updated_at BEFORE UPDATE ON public.clients
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER sales_prospects_set_updated_at BEFORE UPDATE ON public.sales_prospects
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER contacts_set_updated_at BEFORE UPDATE ON public.contacts
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER ghl_integrations_set_updated_at BEFORE UPDATE ON public.ghl_integrations
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER ghl_import_batches_set_updated_at BEFORE UPDATE ON public.ghl_import_batches
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER sales_calls_set_updated_at BEFORE UPDATE ON public.sales_calls
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TRIGGER calls_set_updated_at BEFORE UPDATE ON public.calls
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();

CREATE OR REPLACE FUNCTION public.touch_prospect_content() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.first_name, NEW.last_name, NEW.company_name, NEW.email, NEW.phone, NEW.contact_title,
      NEW.linkedin_url, NEW.market_name, NEW.source, NEW.tags, NEW.campaign, NEW.ghl_location_id)
     IS DISTINCT FROM
     (OLD.first_name, OLD.last_name, OLD.company_name, OLD.email, OLD.phone, OLD.contact_title,
      OLD.linkedin_url, OLD.market_name, OLD.source, OLD.tags, OLD.campaign, OLD.ghl_location_id)
  THEN
    NEW.content_updated_at := clock_timestamp();
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER sales_prospects_touch_content BEFORE UPDATE ON public.sales_prospects
  FOR EACH ROW EXECUTE FUNCTION public.touch_prospect_content();

-- ---------------------------------------------------------------------------------------------
-- Indexes for every lookup the flows make
-- ---------------------------------------------------------------------------------------------

CREATE INDEX sales_prospects_ghl_contact_id_idx ON public.sales_prospects (ghl_contact_id);
CREATE INDEX sales_prospects_phone_e164_idx ON public.sales_prospects (phone_e164);
CREATE INDEX sales_prospects_email_normalized_idx ON public.sales_prospects (email_normalized);
CREATE INDEX sales_prospects_sync_due_idx ON public.sales_prospects (ghl_location_id, content_updated_at)
  WHERE ghl_location_id IS NOT NULL;

CREATE INDEX contacts_client_id_idx ON public.contacts (client_id);
CREATE INDEX contacts_ghl_contact_id_idx ON public.contacts (client_id, ghl_contact_id);
CREATE INDEX contacts_phone_e164_idx ON public.contacts (client_id, phone_e164);
CREATE INDEX contacts_email_normalized_idx ON public.contacts (client_id, email_normalized);

CREATE INDEX ghl_integrations_client_id_idx ON public.ghl_integrations (client_id);

CREATE INDEX ghl_import_batches_open_idx ON public.ghl_import_batches (created_at)
  WHERE status IN ('pending', 'processing');
CREATE INDEX ghl_import_batches_location_idx ON public.ghl_import_batches (location_id);
CREATE INDEX ghl_import_batches_created_by_idx ON public.ghl_import_batches (created_by);

CREATE INDEX ghl_import_staging_batch_status_idx ON public.ghl_import_staging (batch_id, status);
CREATE UNIQUE INDEX ghl_import_staging_batch_record_uidx
  ON public.ghl_import_staging (batch_id, record_kind, external_id);
CREATE INDEX ghl_import_staging_matched_prospect_idx ON public.ghl_import_staging (matched_prospect_id);
CREATE INDEX ghl_import_staging_matched_contact_idx ON public.ghl_import_staging (matched_contact_id);

CREATE INDEX sales_calls_prospect_id_idx ON public.sales_calls (prospect_id);
CREATE INDEX sales_calls_ghl_contact_id_idx ON public.sales_calls (ghl_contact_id);
CREATE INDEX calls_contact_id_idx ON public.calls (contact_id);
CREATE INDEX calls_client_id_idx ON public.calls (client_id);
CREATE INDEX calls_ghl_contact_id_idx ON public.calls (ghl_contact_id);

CREATE INDEX ghl_webhook_events_call_id_idx ON public.ghl_webhook_events (call_id);
CREATE INDEX ghl_webhook_events_received_at_idx ON public.ghl_webhook_events (received_at);
CREATE UNIQUE INDEX ghl_webhook_events_spool_key_key ON public.ghl_webhook_events (spool_key)
  WHERE spool_key IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Row level security: enabled everywhere, no policy for anon, so the anon key reads no row (an
-- api_token is never readable with it). The bundle runs as service_role (BYPASSRLS). Writes to the
-- GHL tables are also revoked from the client-side roles outright, whatever policies come later.
-- ---------------------------------------------------------------------------------------------

ALTER TABLE public.clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sales_prospects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ghl_integrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ghl_import_batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ghl_import_staging ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sales_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ghl_webhook_events ENABLE ROW LEVEL SECURITY;

REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER
  ON public.ghl_integrations, public.ghl_import_batches, public.ghl_import_staging, public.ghl_webhook_events
  FROM anon, authenticated;

-- Helper functions are for the database's own use, not for the API.
REVOKE EXECUTE ON FUNCTION public.set_updated_at(), public.touch_prospect_content(),
  public.forbid_change_of_append_only_row() FROM PUBLIC, anon, authenticated;
