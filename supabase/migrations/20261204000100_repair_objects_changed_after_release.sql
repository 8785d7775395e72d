-- Repair: what changed in already-landed migration files after databases were made from them.
--
-- Databases apply a migration once, by its version (supabase db push, deploy.sh, the local stack), so the
-- edits made to landed files after release 1097d79 (the fold f06d505, e25e84e disposition names, 2c487d9
-- 'call me back', 756fe22 the import pull) never reached a database made before them: it kept the old merge
-- (a location's disposition mapping ignored, the label lost), the old import functions and a second
-- stage_import_page. This migration brings any such database to exactly what a fresh one has; on a fresh
-- database every statement gives what is already there, except two column comments it adds back.
-- Found by comparing catalogs (tests/integration/test_migration_upgrades.py: a database made at each
-- release point and upgraded must equal a fresh one); the definitions below are copied verbatim from the
-- files that hold them today (20261126001000_create_upsert_call.sql, 20261126003000_create_import_functions.sql).
--
-- From now on migrations are append-only (tests/integration/test_migrations_append_only.py): a change is a new
-- migration like this one (docs/deploy.md).

-- ---------------------------------------------------------------------------------------------
-- Columns and types added to landed CREATE statements
-- ---------------------------------------------------------------------------------------------

-- The merge's row value carries the disposition label (e25e84e); added last, where a fresh database has it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.call_fields'::regclass
                   AND attname = 'disposition_label' AND NOT attisdropped) THEN
    ALTER TYPE public.call_fields ADD ATTRIBUTE disposition_label text;
  END IF;
END $$;

-- What an import pull noticed but did not fail on (756fe22); last column, as in a fresh database.
ALTER TABLE public.ghl_import_batches ADD COLUMN IF NOT EXISTS warnings jsonb NOT NULL DEFAULT '[]'::jsonb;

-- The fold dropped these comments, which databases made before it have (20261126004000): kept everywhere.
COMMENT ON COLUMN public.ghl_webhook_events.spool_key IS
  'the spool object this event was replayed from (NULL: received directly)';
COMMENT ON COLUMN public.ghl_webhook_events.raw_body_bytes IS
  'the rejected body''s exact bytes, when raw_body cannot hold them verbatim (invalid UTF-8, NUL)';

-- ---------------------------------------------------------------------------------------------
-- The call merge (20261126001000_create_upsert_call.sql)
-- ---------------------------------------------------------------------------------------------

-- 'call me back', 'call us back', 'call me later' are callbacks (2c487d9).
CREATE OR REPLACE FUNCTION public.infer_call_disposition(status text, notes text, transcript text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  t text;
BEGIN
  IF status IN ('no-answer', 'missed', 'busy') THEN RETURN 'No Answer'; END IF;
  IF status = 'voicemail' THEN RETURN 'Voicemail'; END IF;
  IF status = 'failed' THEN RETURN 'Incorrect Number'; END IF;
  IF status IS DISTINCT FROM 'answered' AND status IS DISTINCT FROM 'completed' THEN RETURN NULL; END IF;
  t := concat_ws(' ', notes, transcript);
  RETURN CASE
    WHEN t ~* 'gatekeeper|assistant|receptionist' THEN 'Gatekeeper'
    WHEN t ~* 'wrong number|disconnected|not in service' THEN 'Incorrect Number'
    WHEN t ~* 'not interested|no thanks|don[''’]?t call' THEN 'Not Interested'
    WHEN t ~* 'call (me |us )?back|callback|try again|call (me )?later' THEN 'Callback Requested'
    WHEN t ~* 'meeting|schedule|book' THEN 'Meeting Booked'
  END;
END $$;

-- The label behind a chosen disposition stays with it (e25e84e).
CREATE OR REPLACE FUNCTION public.merge_call_fields(p_old public.call_fields, p_new public.call_fields)
RETURNS public.call_fields
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  merged public.call_fields;
  status_kept boolean;
  chosen_new boolean := p_new.disposition IS NOT NULL AND p_new.disposition_source IS DISTINCT FROM 'inferred';
  chosen_old boolean := p_old.disposition IS NOT NULL AND p_old.disposition_source = 'chosen';
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

  -- A chosen disposition beats an inferred one; an inferred one follows the merged row.
  IF chosen_new THEN
    merged.disposition := p_new.disposition;
    merged.disposition_source := 'chosen';
  ELSIF chosen_old THEN
    merged.disposition := p_old.disposition;
    merged.disposition_source := 'chosen';
  ELSE
    merged.disposition := coalesce(
      public.infer_call_disposition(merged.call_status, merged.notes, merged.transcript),
      p_new.disposition, p_old.disposition);
    merged.disposition_source := CASE WHEN merged.disposition IS NOT NULL THEN 'inferred' END;
  END IF;
  -- The label behind a chosen disposition stays with it; else the latest label sent (unmapped).
  merged.disposition_label := CASE WHEN chosen_new THEN p_new.disposition_label
                                   WHEN chosen_old THEN p_old.disposition_label
                                   ELSE coalesce(p_new.disposition_label, p_old.disposition_label) END;

  merged.raw_payload := coalesce(p_old.raw_payload, '{}'::jsonb) || jsonb_build_object('hits',
    coalesce(p_old.raw_payload -> 'hits', '{}'::jsonb) || coalesce(p_new.raw_payload -> 'hits', '{}'::jsonb));
  RETURN merged;
END $$;

-- The location's disposition names first, then the built-in synonyms; the label kept (e25e84e).
CREATE OR REPLACE FUNCTION public.upsert_call(p_call jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_call_id text := nullif(btrim(p_call ->> 'external_call_id'), '');
  v_location text := nullif(btrim(p_call ->> 'location_id'), '');
  v_source text := coalesce(nullif(p_call ->> 'source', ''), 'webhook');
  v_raw jsonb := coalesce(p_call -> 'raw', '{}'::jsonb);
  v_type text;
  v_client uuid;
  v_mapping jsonb;
  v_label text := nullif(btrim(p_call ->> 'disposition_label'), '');
  v_mapped text;
  v_new public.call_fields;
  v_phone text;
  v_link uuid;
  v_id uuid;
  v_inserted boolean;
BEGIN
  IF v_call_id IS NULL THEN
    RAISE EXCEPTION 'upsert_call: external_call_id is required' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF v_source NOT IN ('webhook', 'import') THEN
    RAISE EXCEPTION 'upsert_call: source must be webhook or import, not %', v_source
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- A hit without a location (e.g. a Disposition workflow that does not send it) joins its call's row.
  IF v_location IS NULL THEN
    v_location := coalesce(
      (SELECT ghl_location_id FROM sales_calls WHERE external_call_id = v_call_id),
      (SELECT ghl_location_id FROM calls WHERE external_call_id = v_call_id));
  END IF;
  SELECT integration_type, client_id, disposition_mapping INTO v_type, v_client, v_mapping
    FROM ghl_integrations WHERE location_id = v_location AND is_active IS TRUE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('outcome', 'unknown_location');
  END IF;

  v_new := ROW(
    v_location,
    nullif(p_call ->> 'ghl_contact_id', ''),
    nullif(lower(btrim(p_call ->> 'direction')), ''),
    nullif(p_call ->> 'from_number', ''),
    nullif(p_call ->> 'to_number', ''),
    normalize_call_status(p_call ->> 'call_status'),
    (p_call ->> 'connected')::boolean,
    (p_call ->> 'duration_seconds')::integer,
    (p_call ->> 'started_at')::timestamptz,
    nullif(p_call ->> 'disposition', ''),
    nullif(p_call ->> 'disposition_source', ''),
    nullif(p_call ->> 'notes', ''),
    nullif(p_call ->> 'transcript', ''),
    nullif(p_call ->> 'recording_url', ''),
    jsonb_build_object('hits', jsonb_build_object(v_source || ':' || left(md5(v_raw::text), 16), v_raw)),
    v_label
  )::public.call_fields;
  -- The location's names for its dispositions first, then the built-in synonyms.
  v_mapped := map_disposition_label(v_label, v_mapping);
  IF v_mapped IS NOT NULL THEN
    v_new.disposition := v_mapped;
    v_new.disposition_source := 'chosen';
  END IF;

  -- The contact's number: the one sent, else the far end of the call.
  v_phone := coalesce(nullif(p_call ->> 'contact_phone', ''),
                      CASE WHEN v_new.direction = 'inbound' THEN v_new.from_number ELSE v_new.to_number END);

  IF v_type = 'internal' THEN
    v_link := match_sales_prospect(v_new.ghl_contact_id, v_phone, p_call ->> 'contact_email');
    INSERT INTO sales_calls AS t (
      external_call_id, prospect_id, ghl_location_id, ghl_contact_id, direction, from_number, to_number,
      call_status, connected, duration_seconds, started_at, disposition, disposition_source, notes, transcript,
      recording_url, raw_payload, disposition_label)
    SELECT v_call_id, v_link, m.* FROM merge_call_fields(NULL, v_new) AS m
    ON CONFLICT (external_call_id) DO UPDATE SET (
      prospect_id, ghl_location_id, ghl_contact_id, direction, from_number, to_number,
      call_status, connected, duration_seconds, started_at, disposition, disposition_source, notes, transcript,
      recording_url, raw_payload, disposition_label) = (
      SELECT coalesce(t.prospect_id, EXCLUDED.prospect_id), m.*
      FROM merge_call_fields(ROW(t.ghl_location_id, t.ghl_contact_id, t.direction, t.from_number, t.to_number,
        t.call_status, t.connected, t.duration_seconds, t.started_at, t.disposition, t.disposition_source,
        t.notes, t.transcript, t.recording_url, t.raw_payload, t.disposition_label)::call_fields, v_new) AS m)
    WHERE (t.prospect_id IS NULL AND EXCLUDED.prospect_id IS NOT NULL)
       OR ROW(t.ghl_location_id, t.ghl_contact_id, t.direction, t.from_number, t.to_number,
        t.call_status, t.connected, t.duration_seconds, t.started_at, t.disposition, t.disposition_source,
        t.notes, t.transcript, t.recording_url, t.raw_payload, t.disposition_label)::call_fields
        IS DISTINCT FROM merge_call_fields(ROW(t.ghl_location_id, t.ghl_contact_id, t.direction, t.from_number,
        t.to_number, t.call_status, t.connected, t.duration_seconds, t.started_at, t.disposition,
        t.disposition_source, t.notes, t.transcript, t.recording_url, t.raw_payload, t.disposition_label)::call_fields, v_new)
    RETURNING id, (xmax = 0) INTO v_id, v_inserted;
    IF v_id IS NULL THEN  -- the merge changed nothing (the conflict locked the row; it exists)
      SELECT id INTO v_id FROM sales_calls WHERE external_call_id = v_call_id;
      RETURN jsonb_build_object('outcome', 'unchanged', 'id', v_id, 'table', 'sales_calls');
    END IF;
    RETURN jsonb_build_object('outcome', CASE WHEN v_inserted THEN 'inserted' ELSE 'updated' END,
                              'id', v_id, 'table', 'sales_calls');
  END IF;

  v_link := match_client_contact(v_client, v_new.ghl_contact_id, v_phone, p_call ->> 'contact_email');
  INSERT INTO calls AS t (
    external_call_id, contact_id, client_id, ghl_location_id, ghl_contact_id, direction, from_number, to_number,
    call_status, connected, duration_seconds, started_at, disposition, disposition_source, notes, transcript,
    recording_url, raw_payload, disposition_label)
  SELECT v_call_id, v_link, v_client, m.* FROM merge_call_fields(NULL, v_new) AS m
  ON CONFLICT (external_call_id) DO UPDATE SET (
    contact_id, client_id, ghl_location_id, ghl_contact_id, direction, from_number, to_number,
    call_status, connected, duration_seconds, started_at, disposition, disposition_source, notes, transcript,
    recording_url, raw_payload, disposition_label) = (
    SELECT coalesce(t.contact_id, EXCLUDED.contact_id), coalesce(t.client_id, EXCLUDED.client_id), m.*
    FROM merge_call_fields(ROW(t.ghl_location_id, t.ghl_contact_id, t.direction, t.from_number, t.to_number,
      t.call_status, t.connected, t.duration_seconds, t.started_at, t.disposition, t.disposition_source,
      t.notes, t.transcript, t.recording_url, t.raw_payload, t.disposition_label)::call_fields, v_new) AS m)
  WHERE (t.contact_id IS NULL AND EXCLUDED.contact_id IS NOT NULL)
     OR (t.client_id IS NULL AND EXCLUDED.client_id IS NOT NULL)
     OR ROW(t.ghl_location_id, t.ghl_contact_id, t.direction, t.from_number, t.to_number,
      t.call_status, t.connected, t.duration_seconds, t.started_at, t.disposition, t.disposition_source,
      t.notes, t.transcript, t.recording_url, t.raw_payload, t.disposition_label)::call_fields
      IS DISTINCT FROM merge_call_fields(ROW(t.ghl_location_id, t.ghl_contact_id, t.direction, t.from_number,
      t.to_number, t.call_status, t.connected, t.duration_seconds, t.started_at, t.disposition,
      t.disposition_source, t.notes, t.transcript, t.recording_url, t.raw_payload, t.disposition_label)::call_fields, v_new)
  RETURNING id, (xmax = 0) INTO v_id, v_inserted;
  IF v_id IS NULL THEN
    SELECT id INTO v_id FROM calls WHERE external_call_id = v_call_id;
    RETURN jsonb_build_object('outcome', 'unchanged', 'id', v_id, 'table', 'calls');
  END IF;
  RETURN jsonb_build_object('outcome', CASE WHEN v_inserted THEN 'inserted' ELSE 'updated' END,
                            'id', v_id, 'table', 'calls');
END $$;

-- ---------------------------------------------------------------------------------------------
-- The import (20261126003000_create_import_functions.sql)
-- ---------------------------------------------------------------------------------------------

-- The batch's warnings in its summary (756fe22).
CREATE OR REPLACE FUNCTION public.import_batch_summary(p_batch_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT jsonb_build_object(
    'id', b.id, 'location_id', b.location_id, 'status', b.status, 'kinds', to_jsonb(b.kinds),
    'since', b.since, 'created_by', b.created_by, 'total_records', b.total_records,
    -- kept by stage_import_page per kind (a count of the staging rows would cost a scan per call)
    'staged_records', coalesce((b.pull_state -> 'contacts' ->> 'staged')::integer, 0)
                      + coalesce((b.pull_state -> 'calls' ->> 'staged')::integer, 0),
    'processed_records', b.processed_records, 'error_count', b.error_count,
    'pull_completed_at', b.pull_completed_at, 'completed_at', b.completed_at,
    'failure_reason', b.failure_reason, 'warnings', b.warnings, 'created_at', b.created_at)
  FROM ghl_import_batches b WHERE b.id = p_batch_id
$$;

-- p_warning and p_pages were added (756fe22): a new signature, so the old one goes (PostgREST would find two
-- functions for one call).
DROP FUNCTION IF EXISTS public.stage_import_page(uuid, text, jsonb, jsonb, jsonb, boolean);
CREATE OR REPLACE FUNCTION public.stage_import_page(p_batch_id uuid, p_kind text, p_records jsonb,
                                                    p_expected_state jsonb, p_next_state jsonb,
                                                    p_kind_done boolean, p_warning text DEFAULT NULL,
                                                    p_pages integer DEFAULT 1)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_batch ghl_import_batches%ROWTYPE;
  v_record_kind text;
  v_staged integer := 0;
  v_state jsonb;
BEGIN
  IF p_kind NOT IN ('contacts', 'calls') THEN
    RAISE EXCEPTION 'kind must be contacts or calls, not %', p_kind USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF jsonb_typeof(p_records) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'records must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  v_record_kind := CASE p_kind WHEN 'contacts' THEN 'contact' ELSE 'call' END;

  -- The batch row lock orders concurrent pulls of one batch; the loser sees the moved cursor and stops.
  SELECT * INTO v_batch FROM ghl_import_batches WHERE id = p_batch_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'import batch % does not exist', p_batch_id USING ERRCODE = 'no_data_found';
  END IF;
  IF v_batch.status NOT IN ('pending', 'processing') OR v_batch.pull_completed_at IS NOT NULL
     OR (v_batch.pull_state -> p_kind) IS DISTINCT FROM p_expected_state THEN
    RETURN jsonb_build_object('advanced', false, 'staged', 0, 'state', v_batch.pull_state -> p_kind,
                              'batch', import_batch_summary(p_batch_id));
  END IF;

  WITH page AS (
    SELECT r.item ->> 'external_id' AS external_id, r.item -> 'raw_data' AS raw_data,
           r.item -> 'call_payload' AS call_payload, r.item ->> 'prepare_error' AS prepare_error, r.ordinality
    FROM jsonb_array_elements(p_records) WITH ORDINALITY AS r(item, ordinality)
  ), keyed AS (
    SELECT page.*,
      CASE WHEN v_record_kind = 'contact' THEN page.external_id
           ELSE nullif(coalesce(page.call_payload ->> 'ghl_contact_id', page.raw_data ->> 'contactId'), '') END
        AS ghl_contact_id
    FROM page
  ), inserted AS (
    INSERT INTO ghl_import_staging (batch_id, record_kind, external_id, raw_data, call_payload, prepare_error,
                                    ghl_contact_id, phone_e164, email_normalized)
    SELECT p_batch_id, v_record_kind, k.external_id, coalesce(k.raw_data, 'null'::jsonb), k.call_payload,
           k.prepare_error, k.ghl_contact_id,
           -- a contact's own keys; a call takes its contact's keys from the contact staged in this batch
           CASE WHEN v_record_kind = 'contact' THEN normalize_phone_e164(k.raw_data ->> 'phone')
                ELSE coalesce(c.phone_e164, normalize_phone_e164(k.call_payload ->> 'contact_phone')) END,
           CASE WHEN v_record_kind = 'contact' THEN normalize_email(k.raw_data ->> 'email')
                ELSE coalesce(c.email_normalized, normalize_email(k.call_payload ->> 'contact_email')) END
    FROM keyed k
    -- LATERAL: one unique-index probe per call, whatever the (often stale) statistics of a growing batch say
    LEFT JOIN LATERAL (
      SELECT c.phone_e164, c.email_normalized FROM ghl_import_staging c
      WHERE v_record_kind = 'call' AND c.batch_id = p_batch_id AND c.record_kind = 'contact'
        AND c.external_id = k.ghl_contact_id
      LIMIT 1) c ON true  -- LIMIT keeps the planner from flattening it into a join of the whole batch
    ORDER BY k.ordinality
    ON CONFLICT (batch_id, record_kind, external_id) DO NOTHING
    RETURNING 1
  )
  SELECT count(*) INTO v_staged FROM inserted;

  v_state := v_batch.pull_state || jsonb_build_object(p_kind, p_next_state || jsonb_build_object(
    'done', p_kind_done,
    'staged', coalesce((v_batch.pull_state -> p_kind ->> 'staged')::integer, 0) + v_staged,
    'pages', coalesce((v_batch.pull_state -> p_kind ->> 'pages')::integer, 0) + greatest(p_pages, 1)));
  -- A batch the portal created as 'pending' is being worked from its first staged page on.
  UPDATE ghl_import_batches SET pull_state = v_state, status = 'processing',
    warnings = CASE WHEN p_warning IS NULL THEN warnings ELSE warnings || to_jsonb(left(p_warning, 1000)) END,
    pull_completed_at = CASE WHEN NOT EXISTS (
      SELECT 1 FROM unnest(v_batch.kinds) AS k WHERE (v_state -> k ->> 'done') IS DISTINCT FROM 'true')
      THEN now() END,
    total_records = CASE WHEN NOT EXISTS (
      SELECT 1 FROM unnest(v_batch.kinds) AS k WHERE (v_state -> k ->> 'done') IS DISTINCT FROM 'true')
      THEN (SELECT count(*) FROM ghl_import_staging WHERE batch_id = p_batch_id) END
  WHERE id = p_batch_id;
  RETURN jsonb_build_object('advanced', true, 'staged', v_staged, 'state', v_state -> p_kind,
                            'batch', import_batch_summary(p_batch_id));
END $$;

-- Calls wait for their batch's contacts; a call staged before its contact takes its keys (756fe22).
CREATE OR REPLACE FUNCTION public.process_import_chunk(p_batch_id uuid, p_limit integer,
                                                       p_create_unmatched boolean DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_batch ghl_import_batches%ROWTYPE;
  v_type text;
  v_client uuid;
  v_ids uuid[];
  v_contact_ids uuid[];
  v_row record;
  v_result jsonb;
  v_done_ids uuid[] := '{}';
  v_error_ids uuid[] := '{}';
  v_error_messages text[] := '{}';
  v_final integer;
  v_errors integer;
  v_imported integer;
  v_skipped integer;
  v_calls_ready boolean;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 THEN
    RAISE EXCEPTION 'limit must be at least 1, not %', p_limit USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO v_batch FROM ghl_import_batches WHERE id = p_batch_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'import batch % does not exist', p_batch_id USING ERRCODE = 'no_data_found';
  END IF;
  IF v_batch.status NOT IN ('pending', 'processing') THEN
    RETURN jsonb_build_object('claimed', 0, 'batch', import_batch_summary(p_batch_id));
  END IF;
  SELECT integration_type, client_id INTO v_type, v_client
  FROM ghl_integrations WHERE location_id = v_batch.location_id AND is_active IS TRUE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('claimed', 0, 'batch', fail_import_batch(p_batch_id,
      format('no active GHL integration for location %s', v_batch.location_id)));
  END IF;

  -- Contacts and calls are pulled at once, so their rows interleave: calls wait until every contact of the
  -- batch is staged and processed (a call then links to what its contact's import made of it).
  v_calls_ready := NOT ('contacts' = ANY (v_batch.kinds))
    OR ((v_batch.pull_state -> 'contacts' ->> 'done') = 'true'
        AND NOT EXISTS (SELECT 1 FROM ghl_import_staging WHERE batch_id = p_batch_id AND record_kind = 'contact'
                          AND status IN ('pending', 'matched')));
  v_ids := ARRAY(SELECT id FROM ghl_import_staging
                 WHERE batch_id = p_batch_id AND status IN ('pending', 'matched')
                   AND (record_kind = 'contact' OR v_calls_ready)
                 ORDER BY seq LIMIT p_limit FOR UPDATE SKIP LOCKED);

  IF cardinality(v_ids) > 0 THEN
    -- Malformed records: an error naming the problem; the rest of the chunk goes on.
    UPDATE ghl_import_staging SET status = 'error', processed_at = now(), error_message = CASE
        WHEN record_kind = 'contact' AND jsonb_typeof(raw_data) <> 'object'
          THEN format('contact record is not a JSON object (got %s)', jsonb_typeof(raw_data))
        WHEN record_kind = 'contact' THEN 'contact record has no id'
        WHEN prepare_error IS NOT NULL THEN prepare_error
        ELSE 'call record has no normalised form (call_payload); pull it again' END
    WHERE id = ANY (v_ids) AND CASE record_kind
      WHEN 'contact' THEN jsonb_typeof(raw_data) <> 'object' OR coalesce(external_id, '') = ''
      ELSE prepare_error IS NOT NULL OR jsonb_typeof(call_payload) IS DISTINCT FROM 'object' END;

    -- A call staged before its contact has no keys from it yet: take them now (as staging would have).
    UPDATE ghl_import_staging s SET phone_e164 = coalesce(c.phone_e164, s.phone_e164),
                                    email_normalized = coalesce(c.email_normalized, s.email_normalized)
    FROM ghl_import_staging c
    WHERE s.id = ANY (v_ids) AND s.record_kind = 'call' AND s.status = 'pending'
      AND c.batch_id = p_batch_id AND c.record_kind = 'contact' AND c.external_id = s.ghl_contact_id
      AND (c.phone_e164 IS NOT NULL OR c.email_normalized IS NOT NULL);

    PERFORM match_import_rows(v_ids, v_type, v_client);

    v_contact_ids := ARRAY(SELECT id FROM ghl_import_staging WHERE id = ANY (v_ids) AND record_kind = 'contact'
                           AND status IN ('pending', 'matched') ORDER BY seq);
    IF cardinality(v_contact_ids) > 0 THEN
      BEGIN
        PERFORM import_apply_contacts(v_contact_ids, v_batch.location_id, v_type, v_client, p_create_unmatched);
      EXCEPTION WHEN others THEN
        -- Something in the chunk made the set-based statements fail: row by row, so only that row errs.
        FOR v_row IN SELECT id FROM unnest(v_contact_ids) AS u(id) LOOP
          BEGIN
            PERFORM import_apply_contacts(ARRAY[v_row.id], v_batch.location_id, v_type, v_client,
                                          p_create_unmatched);
          EXCEPTION WHEN others THEN
            UPDATE ghl_import_staging SET status = 'error', processed_at = now(),
              error_message = left('contact could not be imported: ' || SQLERRM, 1000)
            WHERE id = v_row.id;
          END;
        END LOOP;
      END;
    END IF;

    -- Calls: the webhook's merge (upsert_call), one call at a time, each in its own subtransaction.
    FOR v_row IN SELECT id, call_payload, raw_data, phone_e164, email_normalized FROM ghl_import_staging
                 WHERE id = ANY (v_ids) AND record_kind = 'call' AND status IN ('pending', 'matched')
                 ORDER BY seq LOOP
      BEGIN
        v_result := upsert_call(v_row.call_payload || jsonb_strip_nulls(jsonb_build_object(
          'location_id', v_batch.location_id, 'source', 'import',
          -- the contact's phone and email from the staged contact: upsert_call's own matching then links
          -- the call to the same prospect / contact as the staging row's match
          'contact_phone', coalesce(v_row.call_payload ->> 'contact_phone', v_row.phone_e164),
          'contact_email', coalesce(v_row.call_payload ->> 'contact_email', v_row.email_normalized)))
          -- the record as received, kept in the call's raw_payload hits (staged once, in raw_data)
          || jsonb_build_object('raw', v_row.raw_data));
        IF v_result ->> 'outcome' = 'unknown_location' THEN
          v_error_ids := v_error_ids || v_row.id;
          v_error_messages := v_error_messages || format('no active GHL integration for location %s',
                                                         v_batch.location_id);
        ELSE
          v_done_ids := v_done_ids || v_row.id;
        END IF;
      EXCEPTION WHEN others THEN
        v_error_ids := v_error_ids || v_row.id;
        v_error_messages := v_error_messages || left('call could not be imported: ' || SQLERRM, 1000);
      END;
    END LOOP;
    UPDATE ghl_import_staging SET status = 'imported', processed_at = now() WHERE id = ANY (v_done_ids);
    UPDATE ghl_import_staging s SET status = 'error', processed_at = now(), error_message = e.message
    FROM unnest(v_error_ids, v_error_messages) AS e(id, message) WHERE s.id = e.id;
  END IF;

  SELECT count(*) FILTER (WHERE status IN ('imported', 'skipped', 'error')),
         count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE status = 'imported'),
         count(*) FILTER (WHERE status = 'skipped')
    INTO v_final, v_errors, v_imported, v_skipped
  FROM ghl_import_staging WHERE id = ANY (v_ids);

  -- The counters move in this transaction by what it finalised (the batch row lock adds concurrent chunks up).
  IF v_final > 0 THEN
    UPDATE ghl_import_batches SET processed_records = coalesce(processed_records, 0) + v_final,
                                  error_count = coalesce(error_count, 0) + v_errors
    WHERE id = p_batch_id;
  END IF;
  -- A statement of its own, so it sees every chunk committed before this one took the batch row lock.
  UPDATE ghl_import_batches SET status = 'completed', completed_at = now()
  WHERE id = p_batch_id AND status IN ('pending', 'processing') AND pull_completed_at IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM ghl_import_staging
                    WHERE batch_id = p_batch_id AND status IN ('pending', 'matched'));

  RETURN jsonb_build_object('claimed', cardinality(v_ids), 'imported', v_imported, 'skipped', v_skipped,
                            'errors', v_errors, 'batch', import_batch_summary(p_batch_id));
END $$;

-- Only the service role runs the import functions (as 20261126003000 says; the new stage_import_page got the
-- default grants when it was created).
REVOKE EXECUTE ON FUNCTION public.stage_import_page(uuid, text, jsonb, jsonb, jsonb, boolean, text, integer)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.stage_import_page(uuid, text, jsonb, jsonb, jsonb, boolean, text, integer)
  TO service_role;
