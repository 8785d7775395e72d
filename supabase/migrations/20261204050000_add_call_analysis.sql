-- Call analysis with Claude (docs/analysis.md): every call with a real conversation gets an `ai_summary`, out of
-- the webhook's path, by shared/services/analyze_calls.py. Same pattern as enrichment: due rows are marked in SQL
-- (a trigger, so every writer is covered and the webhook stays one round trip), claimed per location with a lease
-- (FOR UPDATE SKIP LOCKED), worked through Anthropic's API, and written back with a claim check, one rpc per
-- group of results.
--
-- analysis_status: NULL = no transcript (nothing to analyse); 'pending' = to analyse (analysis_next_attempt_at
-- says when; analysis_batch_id set = inside a Message Batch, collected by a later run); 'done' = ai_summary
-- stored; 'skipped' = not a conversation worth analysing, or the location's analysis is off (analysis_reason);
-- 'failed' = the model's answer stayed invalid or refused, or the retries ran out (analysis_reason).
--
-- The disposition: a new source 'ai' beside 'chosen' and 'inferred'. The AI's disposition fills the call's when
-- nobody chose one, replacing a regex inference; a chosen one never changes. The regex's value at that moment is
-- kept in analysis_regex_disposition (how often AI and regex disagree: the doctor and analyze --json).
-- merge_call_fields (every webhook hit and import) and record_call_enrichment_results are replaced below so a
-- later hit or an enrichment result keeps 'ai' instead of inferring again.

ALTER TABLE public.ghl_integrations
  ADD COLUMN call_analysis_enabled boolean NOT NULL DEFAULT true,
  ADD COLUMN call_analysis_min_words integer NOT NULL DEFAULT 40,
  ADD CONSTRAINT ghl_integrations_call_analysis_min_words_check CHECK (call_analysis_min_words >= 0);

COMMENT ON COLUMN public.ghl_integrations.call_analysis_enabled IS
  'Send this location''s call transcripts to Anthropic for analysis (docs/analysis.md). Off: nothing is sent.';
COMMENT ON COLUMN public.ghl_integrations.call_analysis_min_words IS
  'Transcripts with fewer words are not analysed (skipped with the reason).';
-- ghl_integrations.time_zone (20261204030000, filled by `ghl-bridge location add` from GHL) is the zone call
-- times and spoken callbacks are read in; NULL: UTC.

ALTER TABLE public.sales_calls DROP CONSTRAINT sales_calls_disposition_source_check,
  ADD CONSTRAINT sales_calls_disposition_source_check CHECK (disposition_source IN ('chosen', 'inferred', 'ai'));
ALTER TABLE public.calls DROP CONSTRAINT calls_disposition_source_check,
  ADD CONSTRAINT calls_disposition_source_check CHECK (disposition_source IN ('chosen', 'inferred', 'ai'));

ALTER TABLE public.sales_calls
  ADD COLUMN ai_summary jsonb,
  ADD COLUMN analysis_status text,
  ADD COLUMN analysis_reason text,
  ADD COLUMN analysis_attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN analysis_requested_at timestamptz,
  ADD COLUMN analysis_next_attempt_at timestamptz,
  ADD COLUMN analysis_claim_id uuid,
  ADD COLUMN analysis_claimed_until timestamptz,
  ADD COLUMN analysis_batch_id text,
  ADD COLUMN analysis_model text,
  ADD COLUMN analysis_prompt_version text,
  ADD COLUMN analysis_input_tokens integer NOT NULL DEFAULT 0,
  ADD COLUMN analysis_output_tokens integer NOT NULL DEFAULT 0,
  ADD COLUMN analysis_batched boolean,
  ADD COLUMN analysis_regex_disposition text,
  ADD COLUMN analysed_at timestamptz,
  ADD CONSTRAINT sales_calls_analysis_status_check
    CHECK (analysis_status IN ('pending', 'done', 'skipped', 'failed'));

ALTER TABLE public.calls
  ADD COLUMN ai_summary jsonb,
  ADD COLUMN analysis_status text,
  ADD COLUMN analysis_reason text,
  ADD COLUMN analysis_attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN analysis_requested_at timestamptz,
  ADD COLUMN analysis_next_attempt_at timestamptz,
  ADD COLUMN analysis_claim_id uuid,
  ADD COLUMN analysis_claimed_until timestamptz,
  ADD COLUMN analysis_batch_id text,
  ADD COLUMN analysis_model text,
  ADD COLUMN analysis_prompt_version text,
  ADD COLUMN analysis_input_tokens integer NOT NULL DEFAULT 0,
  ADD COLUMN analysis_output_tokens integer NOT NULL DEFAULT 0,
  ADD COLUMN analysis_batched boolean,
  ADD COLUMN analysis_regex_disposition text,
  ADD COLUMN analysed_at timestamptz,
  ADD CONSTRAINT calls_analysis_status_check
    CHECK (analysis_status IN ('pending', 'done', 'skipped', 'failed'));

-- Due work per location (the claim), rows inside a batch (the collection), and what ended lately (doctor, cost).
CREATE INDEX sales_calls_analysis_due_idx ON public.sales_calls (ghl_location_id, analysis_next_attempt_at)
  WHERE analysis_status = 'pending';
CREATE INDEX calls_analysis_due_idx ON public.calls (ghl_location_id, analysis_next_attempt_at)
  WHERE analysis_status = 'pending';
CREATE INDEX sales_calls_analysis_batch_idx ON public.sales_calls (analysis_batch_id)
  WHERE analysis_batch_id IS NOT NULL AND analysis_status = 'pending';
CREATE INDEX calls_analysis_batch_idx ON public.calls (analysis_batch_id)
  WHERE analysis_batch_id IS NOT NULL AND analysis_status = 'pending';
CREATE INDEX sales_calls_analysis_ended_idx ON public.sales_calls (ghl_location_id, analysed_at)
  WHERE analysis_status IN ('done', 'failed');
CREATE INDEX calls_analysis_ended_idx ON public.calls (ghl_location_id, analysed_at)
  WHERE analysis_status IN ('done', 'failed');

-- ---------------------------------------------------------------------------------------------
-- Which calls: the skip rules
-- ---------------------------------------------------------------------------------------------

-- How many people speak: distinct media channels of GHL's sentences; else the distinct "Agent:"/"Contact:"/
-- "Speaker N:" labels when every line of the text carries one; NULL when the text says nothing about speakers.
CREATE OR REPLACE FUNCTION public.call_speaker_count(p_transcript text, p_sentences jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  lines integer;
  labelled integer;
  speakers integer;
BEGIN
  IF jsonb_typeof(p_sentences) = 'array' AND jsonb_array_length(p_sentences) > 0 THEN
    SELECT count(DISTINCT coalesce(s ->> 'mediaChannel', s ->> 'media_channel')) INTO speakers
      FROM jsonb_array_elements(p_sentences) AS s;
    IF speakers > 0 THEN
      RETURN speakers;
    END IF;
  END IF;
  IF p_transcript IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT count(*) FILTER (WHERE btrim(l) <> ''),
         count(*) FILTER (WHERE l ~ '^\s*(Agent|Contact|Speaker [0-9]+)\s*:'),
         count(DISTINCT substring(l FROM '^\s*(Agent|Contact|Speaker [0-9]+)\s*:'))
    INTO lines, labelled, speakers
    FROM regexp_split_to_table(p_transcript, '\n') AS l;
  IF lines > 0 AND labelled = lines THEN
    RETURN speakers;
  END IF;
  RETURN NULL;
END $$;

-- Why a call with a transcript is not analysed, or NULL when it is. Keep the reasons' wording: the doctor and
-- docs/analysis.md show them.
CREATE OR REPLACE FUNCTION public.call_analysis_skip_reason(p_status text, p_transcript text, p_sentences jsonb,
                                                            p_min_words integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  words integer := regexp_count(coalesce(p_transcript, ''), '\S+');
BEGIN
  IF p_status = 'voicemail' THEN
    RETURN 'voicemail';
  END IF;
  IF public.call_speaker_count(p_transcript, p_sentences) = 1 THEN
    RETURN 'one speaker only';
  END IF;
  IF words < coalesce(p_min_words, 40) THEN
    RETURN format('fewer than %s words (%s)', coalesce(p_min_words, 40), words);
  END IF;
  RETURN NULL;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Marking: when a call's transcript lands (or its status or sentences change while it is not analysed yet),
-- decide pending / skipped. 'done' and 'failed' stay (exactly one analysis per call and prompt version: a new
-- analysis is asked for on purpose, requeue_call_analyses). A call inside a batch or claimed stays as it is.
-- A location whose analysis is off gets its calls skipped ('analysis off for the location'): turning it on later
-- analyses new calls, never old ones by accident (requeue_call_analyses does that on purpose).
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.mark_call_analysis() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_enabled boolean;
  v_min_words integer;
  v_reason text;
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.transcript IS NOT DISTINCT FROM OLD.transcript
     AND NEW.call_status IS NOT DISTINCT FROM OLD.call_status
     AND NEW.transcript_sentences IS NOT DISTINCT FROM OLD.transcript_sentences THEN
    RETURN NEW;  -- nothing the decision depends on changed (the worker's own writes end here)
  END IF;
  IF NEW.analysis_status IN ('done', 'failed') OR NEW.analysis_batch_id IS NOT NULL
     OR (NEW.analysis_status = 'pending' AND NEW.analysis_claimed_until > now()) THEN
    RETURN NEW;
  END IF;
  IF nullif(btrim(NEW.transcript), '') IS NULL THEN
    IF NEW.analysis_status IS NOT NULL THEN  -- the transcript was removed
      NEW.analysis_status := NULL;
      NEW.analysis_reason := NULL;
      NEW.analysis_next_attempt_at := NULL;
    END IF;
    RETURN NEW;
  END IF;
  SELECT i.call_analysis_enabled, i.call_analysis_min_words INTO v_enabled, v_min_words
    FROM public.ghl_integrations i WHERE i.location_id = NEW.ghl_location_id;
  v_reason := CASE WHEN v_enabled IS NOT TRUE THEN 'analysis off for the location'
                   ELSE public.call_analysis_skip_reason(NEW.call_status, NEW.transcript, NEW.transcript_sentences,
                                                         v_min_words) END;
  IF v_reason IS NULL THEN
    IF NEW.analysis_status IS DISTINCT FROM 'pending' THEN
      NEW.analysis_status := 'pending';
      NEW.analysis_attempts := 0;
      NEW.analysis_requested_at := now();
      NEW.analysis_next_attempt_at := now();
    END IF;
    NEW.analysis_reason := NULL;
  ELSE
    NEW.analysis_status := 'skipped';
    NEW.analysis_reason := v_reason;
    NEW.analysis_next_attempt_at := NULL;
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER sales_calls_mark_analysis BEFORE INSERT OR UPDATE ON public.sales_calls
  FOR EACH ROW EXECUTE FUNCTION public.mark_call_analysis();
CREATE TRIGGER calls_mark_analysis BEFORE INSERT OR UPDATE ON public.calls
  FOR EACH ROW EXECUTE FUNCTION public.mark_call_analysis();

-- Calls that had a transcript before this migration are left alone (NULL): analysing the past is an operator's
-- decision (ghl-bridge analyze --again --since ...), not a side effect of deploying.

-- ---------------------------------------------------------------------------------------------
-- The disposition: 'ai' beats 'inferred', 'chosen' beats both
-- ---------------------------------------------------------------------------------------------

-- Same as 20261126001000's, plus: an 'ai' disposition stays until a person chooses one (a later hit infers no
-- disposition over it).
CREATE OR REPLACE FUNCTION public.merge_call_fields(p_old public.call_fields, p_new public.call_fields)
RETURNS public.call_fields
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  merged public.call_fields;
  status_kept boolean;
  chosen_new boolean := p_new.disposition IS NOT NULL AND p_new.disposition_source IS DISTINCT FROM 'inferred'
                        AND p_new.disposition_source IS DISTINCT FROM 'ai';
  chosen_old boolean := p_old.disposition IS NOT NULL AND p_old.disposition_source = 'chosen';
  ai_old boolean := p_old.disposition IS NOT NULL AND p_old.disposition_source = 'ai';
BEGIN
  merged.ghl_location_id := coalesce(p_new.ghl_location_id, p_old.ghl_location_id);
  merged.ghl_contact_id := coalesce(p_new.ghl_contact_id, p_old.ghl_contact_id);
  merged.direction := coalesce(p_new.direction, p_old.direction);
  merged.from_number := coalesce(p_new.from_number, p_old.from_number);
  merged.to_number := coalesce(p_new.to_number, p_old.to_number);
  merged.duration_seconds := coalesce(p_new.duration_seconds, p_old.duration_seconds);
  merged.started_at := coalesce(p_new.started_at, p_old.started_at);
  merged.notes := coalesce(p_new.notes, p_old.notes);
  merged.transcript := coalesce(p_new.transcript, p_old.transcript);
  merged.recording_url := coalesce(p_new.recording_url, p_old.recording_url);

  -- A final status beats a transient one.
  status_kept := p_new.call_status IS NULL
    OR (p_old.call_status IS NOT NULL AND public.is_transient_call_status(p_new.call_status)
        AND NOT public.is_transient_call_status(p_old.call_status));
  merged.call_status := CASE WHEN status_kept THEN p_old.call_status ELSE p_new.call_status END;
  merged.connected := coalesce(
    CASE WHEN status_kept THEN p_old.connected ELSE coalesce(p_new.connected, p_old.connected) END,
    CASE WHEN merged.call_status IN ('answered', 'completed') THEN true
         WHEN NOT public.is_transient_call_status(merged.call_status) THEN false END);

  -- A chosen disposition beats the AI's, which beats an inferred one; an inferred one follows the merged row.
  IF chosen_new THEN
    merged.disposition := p_new.disposition;
    merged.disposition_source := 'chosen';
  ELSIF chosen_old THEN
    merged.disposition := p_old.disposition;
    merged.disposition_source := 'chosen';
  ELSIF ai_old THEN
    merged.disposition := p_old.disposition;
    merged.disposition_source := 'ai';
  ELSE
    merged.disposition := coalesce(
      public.infer_call_disposition(merged.call_status, merged.notes, merged.transcript),
      p_new.disposition, p_old.disposition);
    merged.disposition_source := CASE WHEN merged.disposition IS NOT NULL THEN 'inferred' END;
  END IF;
  merged.disposition_label := CASE WHEN chosen_new THEN p_new.disposition_label
                                   WHEN chosen_old THEN p_old.disposition_label
                                   ELSE coalesce(p_new.disposition_label, p_old.disposition_label) END;

  merged.raw_payload := coalesce(p_old.raw_payload, '{}'::jsonb) || jsonb_build_object('hits',
    coalesce(p_old.raw_payload -> 'hits', '{}'::jsonb) || coalesce(p_new.raw_payload -> 'hits', '{}'::jsonb));
  RETURN merged;
END $$;

-- Same as 20261202010000's, except that an 'ai' disposition is kept like a chosen one (enrichment infers again only
-- a disposition nobody and no model set).
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
           CASE WHEN c.disposition_source IN ('chosen', 'ai') THEN c.disposition
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
    disposition_source = CASE WHEN s.disposition_source IN ('chosen', 'ai') THEN s.disposition_source
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
           CASE WHEN c.disposition_source IN ('chosen', 'ai') THEN c.disposition
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
    disposition_source = CASE WHEN s.disposition_source IN ('chosen', 'ai') THEN s.disposition_source
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

-- ---------------------------------------------------------------------------------------------
-- The worker's SQL: integrations, the location's state, claims, results, batches, requeue. One round trip each.
-- ---------------------------------------------------------------------------------------------

-- Active integrations whose analysis is on (both kinds: sales_calls and calls).
CREATE OR REPLACE FUNCTION public.list_analyze_integrations(p_location_id text DEFAULT NULL)
RETURNS TABLE (location_id text, name text, integration_type text, time_zone text)
LANGUAGE sql STABLE AS $$
  SELECT i.location_id, i.name, i.integration_type, i.time_zone
  FROM public.ghl_integrations i
  WHERE i.is_active IS TRUE AND i.call_analysis_enabled
    AND (p_location_id IS NULL OR i.location_id = p_location_id)
  ORDER BY i.location_id
$$;

-- What a location's run decides on before claiming: how many calls are due now (outside batches), and the
-- Message Batches its pending calls are waiting in (to collect).
CREATE OR REPLACE FUNCTION public.analysis_location_state(p_location_id text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  WITH due AS (
    SELECT 1 FROM public.sales_calls c
    WHERE c.ghl_location_id = p_location_id AND c.analysis_status = 'pending' AND c.analysis_batch_id IS NULL
      AND c.analysis_next_attempt_at <= now()
      AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now())
    UNION ALL
    SELECT 1 FROM public.calls c
    WHERE c.ghl_location_id = p_location_id AND c.analysis_status = 'pending' AND c.analysis_batch_id IS NULL
      AND c.analysis_next_attempt_at <= now()
      AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now())
  ), batches AS (
    SELECT c.analysis_batch_id AS id FROM public.sales_calls c
    WHERE c.ghl_location_id = p_location_id AND c.analysis_status = 'pending' AND c.analysis_batch_id IS NOT NULL
    UNION
    SELECT c.analysis_batch_id FROM public.calls c
    WHERE c.ghl_location_id = p_location_id AND c.analysis_status = 'pending' AND c.analysis_batch_id IS NOT NULL
  )
  SELECT jsonb_build_object('due', (SELECT count(*) FROM due),
                            'batches', coalesce((SELECT jsonb_agg(id ORDER BY id) FROM batches), '[]'::jsonb))
$$;

-- Claim up to p_limit due calls of a location (both tables, oldest due first) for p_lease_seconds under p_claim_id,
-- with what the request needs (transcript, start time, the location's time zone). Nothing when the location's
-- analysis is off or it is inactive: a switched-off location never has a transcript sent.
CREATE OR REPLACE FUNCTION public.claim_due_analyses(p_location_id text, p_claim_id uuid, p_lease_seconds integer,
                                                     p_limit integer)
RETURNS TABLE (id uuid, call_table text, transcript text, started_at timestamptz, time_zone text,
               attempts integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  taken integer;
  v_time_zone text;
BEGIN
  IF p_location_id IS NULL OR p_claim_id IS NULL THEN
    RAISE EXCEPTION 'claim_due_analyses: location id and claim id are required' USING ERRCODE = '22004';
  END IF;
  IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_limit IS NULL OR p_limit < 1 THEN
    RAISE EXCEPTION 'claim_due_analyses: lease seconds and limit must be at least 1' USING ERRCODE = '22023';
  END IF;
  SELECT coalesce(i.time_zone, 'UTC') INTO v_time_zone FROM public.ghl_integrations i
    WHERE i.location_id = p_location_id AND i.is_active IS TRUE AND i.call_analysis_enabled;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH due AS (
    SELECT c.id FROM public.sales_calls c
    WHERE c.ghl_location_id = p_location_id AND c.analysis_status = 'pending' AND c.analysis_batch_id IS NULL
      AND c.analysis_next_attempt_at <= now()
      AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now())
    ORDER BY c.analysis_next_attempt_at, c.id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.sales_calls c
  SET analysis_claim_id = p_claim_id, analysis_claimed_until = now() + make_interval(secs => p_lease_seconds)
  FROM due WHERE c.id = due.id
  RETURNING c.id, 'sales_calls'::text, c.transcript, coalesce(c.started_at, c.created_at), v_time_zone,
            c.analysis_attempts;
  GET DIAGNOSTICS taken = ROW_COUNT;
  IF taken >= p_limit THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH due AS (
    SELECT c.id FROM public.calls c
    WHERE c.ghl_location_id = p_location_id AND c.analysis_status = 'pending' AND c.analysis_batch_id IS NULL
      AND c.analysis_next_attempt_at <= now()
      AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now())
    ORDER BY c.analysis_next_attempt_at, c.id
    LIMIT p_limit - taken
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.calls c
  SET analysis_claim_id = p_claim_id, analysis_claimed_until = now() + make_interval(secs => p_lease_seconds)
  FROM due WHERE c.id = due.id
  RETURNING c.id, 'calls'::text, c.transcript, coalesce(c.started_at, c.created_at), v_time_zone,
            c.analysis_attempts;
END $$;

-- Claim the calls still waiting in a Message Batch (to write its results), under p_claim_id for p_lease_seconds.
-- Nothing when the location's analysis was switched off meanwhile (its results are then not stored).
CREATE OR REPLACE FUNCTION public.claim_analysis_batch(p_location_id text, p_batch_id text, p_claim_id uuid,
                                                       p_lease_seconds integer)
RETURNS TABLE (id uuid, call_table text, transcript text, attempts integer)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF p_batch_id IS NULL OR p_claim_id IS NULL OR coalesce(p_lease_seconds, 0) < 1 THEN
    RAISE EXCEPTION 'claim_analysis_batch: batch id, claim id and a lease are required' USING ERRCODE = '22004';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM public.ghl_integrations i WHERE i.location_id = p_location_id
                   AND i.is_active IS TRUE AND i.call_analysis_enabled) THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH due AS (
    SELECT c.id FROM public.sales_calls c
    WHERE c.analysis_batch_id = p_batch_id AND c.analysis_status = 'pending' AND c.ghl_location_id = p_location_id
      AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now())
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.sales_calls c
  SET analysis_claim_id = p_claim_id, analysis_claimed_until = now() + make_interval(secs => p_lease_seconds)
  FROM due WHERE c.id = due.id
  RETURNING c.id, 'sales_calls'::text, c.transcript, c.analysis_attempts;
  RETURN QUERY
  WITH due AS (
    SELECT c.id FROM public.calls c
    WHERE c.analysis_batch_id = p_batch_id AND c.analysis_status = 'pending' AND c.ghl_location_id = p_location_id
      AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now())
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.calls c
  SET analysis_claim_id = p_claim_id, analysis_claimed_until = now() + make_interval(secs => p_lease_seconds)
  FROM due WHERE c.id = due.id
  RETURNING c.id, 'calls'::text, c.transcript, c.analysis_attempts;
END $$;

-- Write a group of results of calls still claimed by p_claim_id (and still pending); returns how many were written
-- (fewer: those claims ended and another run holds the calls, which then writes them).
-- p_results: [{"id", "table": "sales_calls"|"calls", "outcome", "summary"?, "model"?, "prompt_version"?,
--              "input_tokens"?, "output_tokens"?, "reason"?, "batch_id"?, "batched"?}]
--   done:      ai_summary stored (validated by the worker), model, prompt version, analysed_at; the AI's
--              disposition fills the call's unless a person chose one (source 'ai'); the regex's value is kept
--              in analysis_regex_disposition;
--   failed:    'failed' with the reason (an answer invalid or refused twice);
--   retry:     'pending' again after a backoff doubling from p_backoff_base_seconds (capped); after
--              p_max_attempts attempts 'failed' with the reason;
--   batched:   the call waits in Message Batch batch_id (still 'pending', not claimable live);
--   unbatched: the batch gave no answer for it (expired, errored, canceled): 'pending', due now;
--   released:  the claim is given back untouched.
-- Tokens add up over attempts (what the call cost, invalid answers included).
CREATE OR REPLACE FUNCTION public.record_call_analysis_results(
  p_claim_id uuid, p_results jsonb, p_backoff_base_seconds integer DEFAULT 60,
  p_backoff_cap_seconds integer DEFAULT 3600, p_max_attempts integer DEFAULT 8)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  written integer := 0;
  n integer;
BEGIN
  IF p_claim_id IS NULL THEN
    RAISE EXCEPTION 'record_call_analysis_results: claim id is required' USING ERRCODE = '22004';
  END IF;
  IF jsonb_typeof(p_results) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'record_call_analysis_results: results must be a JSON array' USING ERRCODE = '22023';
  END IF;

  WITH r AS (
    SELECT x.* FROM jsonb_to_recordset(p_results) AS x(
      id uuid, "table" text, outcome text, summary jsonb, model text, prompt_version text, input_tokens integer,
      output_tokens integer, reason text, batch_id text, batched boolean)
    WHERE x."table" = 'sales_calls'
  ), s AS (
    SELECT r.*, c.analysis_attempts + CASE WHEN r.outcome IN ('done', 'failed', 'retry') THEN 1 ELSE 0 END
             AS attempts_after,
           CASE WHEN r.outcome = 'done' AND c.disposition_source IS DISTINCT FROM 'chosen'
                     AND r.summary ->> 'disposition' IN ('No Answer', 'Voicemail', 'Gatekeeper', 'Incorrect Number',
                       'Not Interested', 'Callback Requested', 'Future Potential', 'Meeting Booked', 'Do Not Contact')
                THEN r.summary ->> 'disposition' END AS ai_disposition
    FROM public.sales_calls c JOIN r ON r.id = c.id
    WHERE c.analysis_claim_id = p_claim_id AND c.analysis_status = 'pending'
    FOR UPDATE OF c
  )
  UPDATE public.sales_calls c SET
    analysis_claim_id = NULL,
    analysis_claimed_until = NULL,
    analysis_attempts = s.attempts_after,
    analysis_status = CASE s.outcome WHEN 'done' THEN 'done' WHEN 'failed' THEN 'failed'
                        WHEN 'retry' THEN CASE WHEN s.attempts_after >= p_max_attempts THEN 'failed' ELSE 'pending' END
                        ELSE 'pending' END,
    analysis_reason = CASE WHEN s.outcome IN ('done', 'batched') THEN NULL
                           WHEN s.outcome = 'released' THEN c.analysis_reason
                           WHEN s.outcome = 'retry' AND s.attempts_after >= p_max_attempts
                             THEN format('gave up after %s attempts: %s', s.attempts_after, s.reason)
                           ELSE s.reason END,
    analysis_next_attempt_at = CASE s.outcome
      WHEN 'done' THEN NULL WHEN 'failed' THEN NULL WHEN 'unbatched' THEN now()
      WHEN 'retry' THEN CASE WHEN s.attempts_after >= p_max_attempts THEN NULL
        ELSE now() + make_interval(secs => least(p_backoff_cap_seconds::double precision,
                                                 p_backoff_base_seconds * 2.0 ^ least(c.analysis_attempts, 30))) END
      ELSE c.analysis_next_attempt_at END,
    analysis_batch_id = CASE s.outcome WHEN 'batched' THEN s.batch_id WHEN 'done' THEN c.analysis_batch_id
                          WHEN 'released' THEN c.analysis_batch_id ELSE NULL END,
    analysis_input_tokens = c.analysis_input_tokens + coalesce(s.input_tokens, 0),
    analysis_output_tokens = c.analysis_output_tokens + coalesce(s.output_tokens, 0),
    ai_summary = CASE WHEN s.outcome = 'done' THEN s.summary ELSE c.ai_summary END,
    analysis_model = CASE WHEN s.outcome IN ('done', 'failed') THEN coalesce(s.model, c.analysis_model)
                          ELSE c.analysis_model END,
    analysis_prompt_version = CASE WHEN s.outcome IN ('done', 'failed') THEN s.prompt_version
                                   ELSE c.analysis_prompt_version END,
    analysis_batched = CASE WHEN s.outcome IN ('done', 'failed') THEN coalesce(s.batched, false)
                            ELSE c.analysis_batched END,
    analysed_at = CASE WHEN s.outcome = 'done' OR s.outcome = 'failed'
                         OR (s.outcome = 'retry' AND s.attempts_after >= p_max_attempts) THEN now()
                       ELSE c.analysed_at END,
    analysis_regex_disposition = CASE WHEN s.outcome = 'done'
      THEN public.infer_call_disposition(c.call_status, c.notes, c.transcript) ELSE c.analysis_regex_disposition END,
    disposition = coalesce(s.ai_disposition, c.disposition),
    disposition_source = CASE WHEN s.ai_disposition IS NOT NULL THEN 'ai' ELSE c.disposition_source END
  FROM s WHERE c.id = s.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  written := written + n;

  WITH r AS (
    SELECT x.* FROM jsonb_to_recordset(p_results) AS x(
      id uuid, "table" text, outcome text, summary jsonb, model text, prompt_version text, input_tokens integer,
      output_tokens integer, reason text, batch_id text, batched boolean)
    WHERE x."table" = 'calls'
  ), s AS (
    SELECT r.*, c.analysis_attempts + CASE WHEN r.outcome IN ('done', 'failed', 'retry') THEN 1 ELSE 0 END
             AS attempts_after,
           CASE WHEN r.outcome = 'done' AND c.disposition_source IS DISTINCT FROM 'chosen'
                     AND r.summary ->> 'disposition' IN ('No Answer', 'Voicemail', 'Gatekeeper', 'Incorrect Number',
                       'Not Interested', 'Callback Requested', 'Future Potential', 'Meeting Booked', 'Do Not Contact')
                THEN r.summary ->> 'disposition' END AS ai_disposition
    FROM public.calls c JOIN r ON r.id = c.id
    WHERE c.analysis_claim_id = p_claim_id AND c.analysis_status = 'pending'
    FOR UPDATE OF c
  )
  UPDATE public.calls c SET
    analysis_claim_id = NULL,
    analysis_claimed_until = NULL,
    analysis_attempts = s.attempts_after,
    analysis_status = CASE s.outcome WHEN 'done' THEN 'done' WHEN 'failed' THEN 'failed'
                        WHEN 'retry' THEN CASE WHEN s.attempts_after >= p_max_attempts THEN 'failed' ELSE 'pending' END
                        ELSE 'pending' END,
    analysis_reason = CASE WHEN s.outcome IN ('done', 'batched') THEN NULL
                           WHEN s.outcome = 'released' THEN c.analysis_reason
                           WHEN s.outcome = 'retry' AND s.attempts_after >= p_max_attempts
                             THEN format('gave up after %s attempts: %s', s.attempts_after, s.reason)
                           ELSE s.reason END,
    analysis_next_attempt_at = CASE s.outcome
      WHEN 'done' THEN NULL WHEN 'failed' THEN NULL WHEN 'unbatched' THEN now()
      WHEN 'retry' THEN CASE WHEN s.attempts_after >= p_max_attempts THEN NULL
        ELSE now() + make_interval(secs => least(p_backoff_cap_seconds::double precision,
                                                 p_backoff_base_seconds * 2.0 ^ least(c.analysis_attempts, 30))) END
      ELSE c.analysis_next_attempt_at END,
    analysis_batch_id = CASE s.outcome WHEN 'batched' THEN s.batch_id WHEN 'done' THEN c.analysis_batch_id
                          WHEN 'released' THEN c.analysis_batch_id ELSE NULL END,
    analysis_input_tokens = c.analysis_input_tokens + coalesce(s.input_tokens, 0),
    analysis_output_tokens = c.analysis_output_tokens + coalesce(s.output_tokens, 0),
    ai_summary = CASE WHEN s.outcome = 'done' THEN s.summary ELSE c.ai_summary END,
    analysis_model = CASE WHEN s.outcome IN ('done', 'failed') THEN coalesce(s.model, c.analysis_model)
                          ELSE c.analysis_model END,
    analysis_prompt_version = CASE WHEN s.outcome IN ('done', 'failed') THEN s.prompt_version
                                   ELSE c.analysis_prompt_version END,
    analysis_batched = CASE WHEN s.outcome IN ('done', 'failed') THEN coalesce(s.batched, false)
                            ELSE c.analysis_batched END,
    analysed_at = CASE WHEN s.outcome = 'done' OR s.outcome = 'failed'
                         OR (s.outcome = 'retry' AND s.attempts_after >= p_max_attempts) THEN now()
                       ELSE c.analysed_at END,
    analysis_regex_disposition = CASE WHEN s.outcome = 'done'
      THEN public.infer_call_disposition(c.call_status, c.notes, c.transcript) ELSE c.analysis_regex_disposition END,
    disposition = coalesce(s.ai_disposition, c.disposition),
    disposition_source = CASE WHEN s.ai_disposition IS NOT NULL THEN 'ai' ELSE c.disposition_source END
  FROM s WHERE c.id = s.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN written + n;
END $$;

-- Analyse again on purpose (ghl-bridge analyze --again --since): calls of a location (or all) started since
-- p_since whose analysis is not of p_prompt_version (done with another version, failed, skipped, or never
-- marked) are decided again by the skip rules: 'pending' (due now) or 'skipped' with the reason. A call done with
-- p_prompt_version is never analysed again. Returns how many calls became pending.
CREATE OR REPLACE FUNCTION public.requeue_call_analyses(p_location_id text, p_since timestamptz,
                                                        p_prompt_version text)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  queued integer := 0;
  n integer;
BEGIN
  IF p_since IS NULL OR p_prompt_version IS NULL THEN
    RAISE EXCEPTION 'requeue_call_analyses: since and prompt version are required' USING ERRCODE = '22004';
  END IF;
  WITH d AS (
    SELECT c.id, CASE WHEN NOT i.call_analysis_enabled THEN 'analysis off for the location'
                      ELSE public.call_analysis_skip_reason(c.call_status, c.transcript, c.transcript_sentences,
                                                            i.call_analysis_min_words) END AS reason
    FROM public.sales_calls c JOIN public.ghl_integrations i ON i.location_id = c.ghl_location_id
    WHERE (p_location_id IS NULL OR c.ghl_location_id = p_location_id)
      AND coalesce(c.started_at, c.created_at) >= p_since AND nullif(btrim(c.transcript), '') IS NOT NULL
      AND (c.analysis_status IS NULL OR c.analysis_status IN ('skipped', 'failed')
           OR (c.analysis_status = 'done' AND c.analysis_prompt_version IS DISTINCT FROM p_prompt_version))
    FOR UPDATE OF c
  )
  UPDATE public.sales_calls c SET
    analysis_status = CASE WHEN d.reason IS NULL THEN 'pending' ELSE 'skipped' END,
    analysis_reason = d.reason, analysis_attempts = 0, analysis_requested_at = now(),
    analysis_next_attempt_at = CASE WHEN d.reason IS NULL THEN now() END,
    analysis_claim_id = NULL, analysis_claimed_until = NULL, analysis_batch_id = NULL
  FROM d WHERE c.id = d.id AND d.reason IS NULL;
  GET DIAGNOSTICS n = ROW_COUNT;
  queued := queued + n;
  WITH d AS (
    SELECT c.id, CASE WHEN NOT i.call_analysis_enabled THEN 'analysis off for the location'
                      ELSE public.call_analysis_skip_reason(c.call_status, c.transcript, c.transcript_sentences,
                                                            i.call_analysis_min_words) END AS reason
    FROM public.calls c JOIN public.ghl_integrations i ON i.location_id = c.ghl_location_id
    WHERE (p_location_id IS NULL OR c.ghl_location_id = p_location_id)
      AND coalesce(c.started_at, c.created_at) >= p_since AND nullif(btrim(c.transcript), '') IS NOT NULL
      AND (c.analysis_status IS NULL OR c.analysis_status IN ('skipped', 'failed')
           OR (c.analysis_status = 'done' AND c.analysis_prompt_version IS DISTINCT FROM p_prompt_version))
    FOR UPDATE OF c
  )
  UPDATE public.calls c SET
    analysis_status = CASE WHEN d.reason IS NULL THEN 'pending' ELSE 'skipped' END,
    analysis_reason = d.reason, analysis_attempts = 0, analysis_requested_at = now(),
    analysis_next_attempt_at = CASE WHEN d.reason IS NULL THEN now() END,
    analysis_claim_id = NULL, analysis_claimed_until = NULL, analysis_batch_id = NULL
  FROM d WHERE c.id = d.id AND d.reason IS NULL;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN queued + n;
END $$;

REVOKE EXECUTE ON FUNCTION
  public.call_speaker_count(text, jsonb), public.call_analysis_skip_reason(text, text, jsonb, integer),
  public.mark_call_analysis(), public.list_analyze_integrations(text), public.analysis_location_state(text),
  public.claim_due_analyses(text, uuid, integer, integer), public.claim_analysis_batch(text, text, uuid, integer),
  public.record_call_analysis_results(uuid, jsonb, integer, integer, integer),
  public.requeue_call_analyses(text, timestamptz, text)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.call_speaker_count(text, jsonb), public.call_analysis_skip_reason(text, text, jsonb, integer),
  public.list_analyze_integrations(text), public.analysis_location_state(text),
  public.claim_due_analyses(text, uuid, integer, integer), public.claim_analysis_batch(text, text, uuid, integer),
  public.record_call_analysis_results(uuid, jsonb, integer, integer, integer),
  public.requeue_call_analyses(text, timestamptz, text)
  TO service_role;
