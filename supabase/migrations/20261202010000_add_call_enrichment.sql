-- Call enrichment: transcripts and recordings fetched from GHL's Conversations API out of the webhook's path
-- (docs/enrichment.md). Same pattern as the prospect sync: due rows are marked in SQL, claimed per location
-- with a lease (FOR UPDATE SKIP LOCKED), worked by shared/services/enrich_calls.py through GhlClient, and
-- written back with a claim check, one rpc per group of results.
--
-- A call needs enrichment when
--   * it connected (status answered/completed, or connected) and has no transcript, or
--   * it lasted (duration > 0) and no recording is stored (recording_path NULL).
-- enrichment_status: NULL = nothing needed, 'pending' = to fetch (enrichment_next_attempt_at says when),
-- 'done' = fetched, 'unavailable' = GHL had nothing within the horizon (enrichment_last_error says why).
--
-- Whether recordings are downloaded is a deployment setting (RECORDINGS_ENABLED), not a per-location flag:
-- the trigger marks a call that lacks a recording either way, and claims/results take the setting as an
-- argument (p_recordings_enabled). With recordings off, such a call is claimed, costs no GHL request, and is
-- recorded 'done'. One setting, one place that reads it.

ALTER TABLE public.sales_calls
  ADD COLUMN transcript_sentences jsonb,
  ADD COLUMN recording_path text,
  ADD COLUMN enrichment_status text,
  ADD COLUMN enrichment_attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN enrichment_requested_at timestamptz,
  ADD COLUMN enrichment_next_attempt_at timestamptz,
  ADD COLUMN enrichment_claim_id uuid,
  ADD COLUMN enrichment_claimed_until timestamptz,
  ADD COLUMN enrichment_last_error text,
  ADD COLUMN enriched_at timestamptz,
  ADD CONSTRAINT sales_calls_enrichment_status_check
    CHECK (enrichment_status IN ('pending', 'done', 'unavailable'));

ALTER TABLE public.calls
  ADD COLUMN transcript_sentences jsonb,
  ADD COLUMN recording_path text,
  ADD COLUMN enrichment_status text,
  ADD COLUMN enrichment_attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN enrichment_requested_at timestamptz,
  ADD COLUMN enrichment_next_attempt_at timestamptz,
  ADD COLUMN enrichment_claim_id uuid,
  ADD COLUMN enrichment_claimed_until timestamptz,
  ADD COLUMN enrichment_last_error text,
  ADD COLUMN enriched_at timestamptz,
  ADD CONSTRAINT calls_enrichment_status_check
    CHECK (enrichment_status IN ('pending', 'done', 'unavailable'));

-- Due work per location (the claim's lookup); only pending rows are indexed.
CREATE INDEX sales_calls_enrichment_due_idx ON public.sales_calls (ghl_location_id, enrichment_next_attempt_at)
  WHERE enrichment_status = 'pending';
CREATE INDEX calls_enrichment_due_idx ON public.calls (ghl_location_id, enrichment_next_attempt_at)
  WHERE enrichment_status = 'pending';

-- ---------------------------------------------------------------------------------------------
-- Marking: a trigger, not code in upsert_call, because it covers every writer of a call row (the webhook
-- and the import through upsert_call, a person editing a row, the worker's own results) and runs inside
-- the writer's statement, so the webhook stays one round trip.
--   * a need that appears (INSERT, or a column that did not need anything now does) -> 'pending', due now;
--   * nothing needed any more while 'pending'/'unavailable' (a later hit brought the transcript) -> NULL;
--   * otherwise the state is left alone ('done' stays done; the worker's writes set the state themselves).
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.call_needs_transcript(p_status text, p_connected boolean, p_transcript text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (p_status IN ('answered', 'completed') OR p_connected IS TRUE) AND p_transcript IS NULL
$$;

CREATE OR REPLACE FUNCTION public.call_needs_recording(p_duration integer, p_recording_path text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(p_duration, 0) > 0 AND p_recording_path IS NULL
$$;

CREATE OR REPLACE FUNCTION public.mark_call_enrichment() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  need_t boolean := public.call_needs_transcript(NEW.call_status, NEW.connected, NEW.transcript);
  need_r boolean := public.call_needs_recording(NEW.duration_seconds, NEW.recording_path);
  new_need boolean;
BEGIN
  IF TG_OP = 'INSERT' THEN
    new_need := need_t OR need_r;
  ELSE
    new_need := (need_t AND NOT public.call_needs_transcript(OLD.call_status, OLD.connected, OLD.transcript))
             OR (need_r AND NOT public.call_needs_recording(OLD.duration_seconds, OLD.recording_path))
             OR ((need_t OR need_r) AND NEW.enrichment_status IS NULL);
  END IF;
  IF new_need AND NEW.enrichment_status IS DISTINCT FROM 'pending' THEN
    NEW.enrichment_status := 'pending';
    NEW.enrichment_attempts := 0;
    NEW.enrichment_requested_at := now();
    NEW.enrichment_next_attempt_at := now();
    NEW.enrichment_last_error := NULL;
  ELSIF NOT (need_t OR need_r) AND NEW.enrichment_status IN ('pending', 'unavailable') THEN
    NEW.enrichment_status := NULL;
    NEW.enrichment_next_attempt_at := NULL;
    NEW.enrichment_claim_id := NULL;
    NEW.enrichment_claimed_until := NULL;
    NEW.enrichment_last_error := NULL;
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER sales_calls_mark_enrichment BEFORE INSERT OR UPDATE ON public.sales_calls
  FOR EACH ROW EXECUTE FUNCTION public.mark_call_enrichment();
CREATE TRIGGER calls_mark_enrichment BEFORE INSERT OR UPDATE ON public.calls
  FOR EACH ROW EXECUTE FUNCTION public.mark_call_enrichment();

-- ---------------------------------------------------------------------------------------------
-- The worker's SQL: integrations, claim, results, summary. One round trip each.
-- ---------------------------------------------------------------------------------------------

-- Active integrations of both kinds (calls of internal locations are in sales_calls, of client ones in calls).
CREATE OR REPLACE FUNCTION public.list_enrich_integrations(p_location_id text DEFAULT NULL)
RETURNS TABLE (location_id text, name text, api_token text, integration_type text)
LANGUAGE sql STABLE AS $$
  SELECT i.location_id, i.name, i.api_token, i.integration_type
  FROM public.ghl_integrations i
  WHERE i.is_active IS TRUE AND (p_location_id IS NULL OR i.location_id = p_location_id)
  ORDER BY i.location_id
$$;

-- Claim up to p_limit due calls of a location (both tables, oldest due first) for p_lease_seconds under
-- p_claim_id. SKIP LOCKED: a concurrent claim takes other rows; a committed claim keeps the row out of every
-- other claim until its lease ends (a killed worker's claim expires by itself).
-- need_recording is false when recordings are off (p_recordings_enabled). was_claimed: an earlier claim ended
-- without a result (a killed worker), so its recording may already be stored: the worker checks the key first.
CREATE OR REPLACE FUNCTION public.claim_due_calls(p_location_id text, p_claim_id uuid, p_lease_seconds integer,
                                                  p_limit integer, p_recordings_enabled boolean DEFAULT true)
RETURNS TABLE (id uuid, call_table text, external_call_id text, need_transcript boolean,
               need_recording boolean, attempts integer, was_claimed boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  taken integer;
BEGIN
  IF p_location_id IS NULL OR p_claim_id IS NULL THEN
    RAISE EXCEPTION 'claim_due_calls: location id and claim id are required' USING ERRCODE = '22004';
  END IF;
  IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_limit IS NULL OR p_limit < 1 THEN
    RAISE EXCEPTION 'claim_due_calls: lease seconds and limit must be at least 1' USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
  WITH due AS (
    SELECT c.id, c.enrichment_claimed_until IS NOT NULL AS was_claimed FROM public.sales_calls c
    WHERE c.ghl_location_id = p_location_id AND c.enrichment_status = 'pending'
      AND c.enrichment_next_attempt_at <= now()
      AND (c.enrichment_claimed_until IS NULL OR c.enrichment_claimed_until <= now())
    ORDER BY c.enrichment_next_attempt_at, c.id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.sales_calls c
  SET enrichment_claim_id = p_claim_id, enrichment_claimed_until = now() + make_interval(secs => p_lease_seconds)
  FROM due WHERE c.id = due.id
  RETURNING c.id, 'sales_calls'::text, c.external_call_id,
            public.call_needs_transcript(c.call_status, c.connected, c.transcript),
            p_recordings_enabled AND public.call_needs_recording(c.duration_seconds, c.recording_path),
            c.enrichment_attempts, due.was_claimed;
  GET DIAGNOSTICS taken = ROW_COUNT;
  IF taken >= p_limit THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH due AS (
    SELECT c.id, c.enrichment_claimed_until IS NOT NULL AS was_claimed FROM public.calls c
    WHERE c.ghl_location_id = p_location_id AND c.enrichment_status = 'pending'
      AND c.enrichment_next_attempt_at <= now()
      AND (c.enrichment_claimed_until IS NULL OR c.enrichment_claimed_until <= now())
    ORDER BY c.enrichment_next_attempt_at, c.id
    LIMIT p_limit - taken
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.calls c
  SET enrichment_claim_id = p_claim_id, enrichment_claimed_until = now() + make_interval(secs => p_lease_seconds)
  FROM due WHERE c.id = due.id
  RETURNING c.id, 'calls'::text, c.external_call_id,
            public.call_needs_transcript(c.call_status, c.connected, c.transcript),
            p_recordings_enabled AND public.call_needs_recording(c.duration_seconds, c.recording_path),
            c.enrichment_attempts, due.was_claimed;
END $$;

-- Write a group of results of calls still claimed by p_claim_id; returns how many were written (fewer: those
-- claims were lost to another worker after the lease ended, which then writes them).
-- p_results: [{"id", "table": "sales_calls"|"calls", "outcome": "attempted"|"released", "transcript"?,
--              "sentences"?, "recording_path"?, "error"?}]
--   released:  the claim is given back untouched (deadline, stopped location);
--   attempted: what was fetched is stored (the transcript only fills an empty one); then
--              nothing left to fetch -> 'done'; else past the horizon (since the need was marked) ->
--              'unavailable' with the reason; else 'pending' again after a backoff doubling from
--              p_backoff_base_seconds, capped at p_backoff_cap_seconds.
-- A disposition nobody chose (source 'inferred' or NULL) is inferred again with the transcript, by the same
-- rule as upsert_call (infer_call_disposition); a chosen one is never touched.
-- The same statement twice (sales_calls, calls) rather than dynamic SQL: each keeps a plain cached plan.
CREATE OR REPLACE FUNCTION public.record_call_enrichment_results(
  p_claim_id uuid, p_results jsonb, p_recordings_enabled boolean DEFAULT true,
  p_horizon_seconds integer DEFAULT 86400, p_backoff_base_seconds integer DEFAULT 60,
  p_backoff_cap_seconds integer DEFAULT 3600)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  written integer := 0;
  n integer;
BEGIN
  IF p_claim_id IS NULL THEN
    RAISE EXCEPTION 'record_call_enrichment_results: claim id is required' USING ERRCODE = '22004';
  END IF;
  IF jsonb_typeof(p_results) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'record_call_enrichment_results: results must be a JSON array' USING ERRCODE = '22023';
  END IF;

  WITH r AS (
    SELECT x.id, x.outcome, nullif(x.transcript, '') AS transcript, x.sentences, x.recording_path, x.error
    FROM jsonb_to_recordset(p_results) AS x(id uuid, "table" text, outcome text, transcript text,
                                            sentences jsonb, recording_path text, error text)
    WHERE x."table" = 'sales_calls'
  ), v AS (
    SELECT c.id, r.outcome, r.error, c.enrichment_attempts, c.enrichment_requested_at,
           coalesce(c.transcript, r.transcript) AS transcript,
           coalesce(r.sentences, c.transcript_sentences) AS sentences,
           coalesce(r.recording_path, c.recording_path) AS recording_path,
           CASE WHEN c.disposition_source = 'chosen' THEN c.disposition
                ELSE coalesce(public.infer_call_disposition(c.call_status, c.notes,
                                                            coalesce(c.transcript, r.transcript)), c.disposition)
           END AS disposition,
           c.disposition_source, c.call_status, c.connected, c.duration_seconds
    FROM public.sales_calls c JOIN r ON r.id = c.id
    WHERE c.enrichment_claim_id = p_claim_id
    FOR UPDATE OF c
  ), s AS (
    SELECT v.*, public.call_needs_transcript(v.call_status, v.connected, v.transcript)
             OR (p_recordings_enabled AND public.call_needs_recording(v.duration_seconds, v.recording_path))
             AS still_needed,
           now() >= coalesce(v.enrichment_requested_at, now()) + make_interval(secs => p_horizon_seconds)
             AS past_horizon
    FROM v
  )
  UPDATE public.sales_calls c SET
    transcript = s.transcript,
    transcript_sentences = s.sentences,
    recording_path = s.recording_path,
    disposition = s.disposition,
    disposition_source = CASE WHEN s.disposition_source = 'chosen' THEN 'chosen'
                              WHEN s.disposition IS NOT NULL THEN 'inferred' END,
    enrichment_claim_id = NULL,
    enrichment_claimed_until = NULL,
    enrichment_attempts = c.enrichment_attempts + CASE WHEN s.outcome = 'released' THEN 0 ELSE 1 END,
    enrichment_status = CASE WHEN s.outcome = 'released' THEN c.enrichment_status
                             WHEN NOT s.still_needed THEN 'done'
                             WHEN s.past_horizon THEN 'unavailable'
                             ELSE 'pending' END,
    enrichment_next_attempt_at = CASE
      WHEN s.outcome = 'released' THEN c.enrichment_next_attempt_at
      WHEN NOT s.still_needed OR s.past_horizon THEN NULL
      ELSE now() + make_interval(secs => least(p_backoff_cap_seconds::double precision,
                                               p_backoff_base_seconds * 2.0 ^ least(c.enrichment_attempts, 30)))
    END,
    enrichment_last_error = CASE WHEN s.outcome = 'released' THEN c.enrichment_last_error
                                 WHEN NOT s.still_needed THEN NULL
                                 ELSE coalesce(s.error, 'GHL had nothing yet') END,
    enriched_at = CASE WHEN s.outcome <> 'released' AND NOT s.still_needed THEN now() ELSE c.enriched_at END
  FROM s WHERE c.id = s.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  written := written + n;

  WITH r AS (
    SELECT x.id, x.outcome, nullif(x.transcript, '') AS transcript, x.sentences, x.recording_path, x.error
    FROM jsonb_to_recordset(p_results) AS x(id uuid, "table" text, outcome text, transcript text,
                                            sentences jsonb, recording_path text, error text)
    WHERE x."table" = 'calls'
  ), v AS (
    SELECT c.id, r.outcome, r.error, c.enrichment_attempts, c.enrichment_requested_at,
           coalesce(c.transcript, r.transcript) AS transcript,
           coalesce(r.sentences, c.transcript_sentences) AS sentences,
           coalesce(r.recording_path, c.recording_path) AS recording_path,
           CASE WHEN c.disposition_source = 'chosen' THEN c.disposition
                ELSE coalesce(public.infer_call_disposition(c.call_status, c.notes,
                                                            coalesce(c.transcript, r.transcript)), c.disposition)
           END AS disposition,
           c.disposition_source, c.call_status, c.connected, c.duration_seconds
    FROM public.calls c JOIN r ON r.id = c.id
    WHERE c.enrichment_claim_id = p_claim_id
    FOR UPDATE OF c
  ), s AS (
    SELECT v.*, public.call_needs_transcript(v.call_status, v.connected, v.transcript)
             OR (p_recordings_enabled AND public.call_needs_recording(v.duration_seconds, v.recording_path))
             AS still_needed,
           now() >= coalesce(v.enrichment_requested_at, now()) + make_interval(secs => p_horizon_seconds)
             AS past_horizon
    FROM v
  )
  UPDATE public.calls c SET
    transcript = s.transcript,
    transcript_sentences = s.sentences,
    recording_path = s.recording_path,
    disposition = s.disposition,
    disposition_source = CASE WHEN s.disposition_source = 'chosen' THEN 'chosen'
                              WHEN s.disposition IS NOT NULL THEN 'inferred' END,
    enrichment_claim_id = NULL,
    enrichment_claimed_until = NULL,
    enrichment_attempts = c.enrichment_attempts + CASE WHEN s.outcome = 'released' THEN 0 ELSE 1 END,
    enrichment_status = CASE WHEN s.outcome = 'released' THEN c.enrichment_status
                             WHEN NOT s.still_needed THEN 'done'
                             WHEN s.past_horizon THEN 'unavailable'
                             ELSE 'pending' END,
    enrichment_next_attempt_at = CASE
      WHEN s.outcome = 'released' THEN c.enrichment_next_attempt_at
      WHEN NOT s.still_needed OR s.past_horizon THEN NULL
      ELSE now() + make_interval(secs => least(p_backoff_cap_seconds::double precision,
                                               p_backoff_base_seconds * 2.0 ^ least(c.enrichment_attempts, 30)))
    END,
    enrichment_last_error = CASE WHEN s.outcome = 'released' THEN c.enrichment_last_error
                                 WHEN NOT s.still_needed THEN NULL
                                 ELSE coalesce(s.error, 'GHL had nothing yet') END,
    enriched_at = CASE WHEN s.outcome <> 'released' AND NOT s.still_needed THEN now() ELSE c.enriched_at END
  FROM s WHERE c.id = s.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN written + n;
END $$;

-- For operator checks (doctor, health): where enrichment stands, for one location or all (NULL).
CREATE OR REPLACE FUNCTION public.enrichment_summary(p_location_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  result jsonb;
BEGIN
  WITH c AS (
    SELECT enrichment_status, enrichment_next_attempt_at, enrichment_claimed_until, enrichment_requested_at
    FROM public.sales_calls WHERE enrichment_status IS NOT NULL
      AND (p_location_id IS NULL OR ghl_location_id = p_location_id)
    UNION ALL
    SELECT enrichment_status, enrichment_next_attempt_at, enrichment_claimed_until, enrichment_requested_at
    FROM public.calls WHERE enrichment_status IS NOT NULL
      AND (p_location_id IS NULL OR ghl_location_id = p_location_id)
  )
  SELECT jsonb_build_object(
    'pending', count(*) FILTER (WHERE enrichment_status = 'pending'),
    'due_now', count(*) FILTER (WHERE enrichment_status = 'pending' AND enrichment_next_attempt_at <= now()
                                 AND (enrichment_claimed_until IS NULL OR enrichment_claimed_until <= now())),
    'claimed', count(*) FILTER (WHERE enrichment_status = 'pending' AND enrichment_claimed_until > now()),
    'done', count(*) FILTER (WHERE enrichment_status = 'done'),
    'unavailable', count(*) FILTER (WHERE enrichment_status = 'unavailable'),
    'oldest_pending_since', min(enrichment_requested_at) FILTER (WHERE enrichment_status = 'pending'))
  INTO result FROM c;
  RETURN result;
END $$;

REVOKE EXECUTE ON FUNCTION
  public.call_needs_transcript(text, boolean, text), public.call_needs_recording(integer, text),
  public.mark_call_enrichment(), public.list_enrich_integrations(text),
  public.claim_due_calls(text, uuid, integer, integer, boolean),
  public.record_call_enrichment_results(uuid, jsonb, boolean, integer, integer, integer),
  public.enrichment_summary(text)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.call_needs_transcript(text, boolean, text), public.call_needs_recording(integer, text),
  public.list_enrich_integrations(text),
  public.claim_due_calls(text, uuid, integer, integer, boolean),
  public.record_call_enrichment_results(uuid, jsonb, boolean, integer, integer, integer),
  public.enrichment_summary(text)
  TO service_role;
