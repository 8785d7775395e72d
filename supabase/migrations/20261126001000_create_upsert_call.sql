-- The one merge rule for calls: public.upsert_call(p_call jsonb), used by the call webhook (through
-- ingest_call_event) and by the import of calls pulled from GHL's messages export.
--
-- Merge, whatever the order of the hits:
--   * a value that arrives fills or updates its column; a missing or null value never erases one;
--   * a final status beats a transient one (ringing, ...): a transient status never replaces a final one;
--   * a chosen disposition beats an inferred one; when none was chosen, the disposition is inferred from the
--     MERGED status, notes and transcript (same rules as shared/domain/calls.py), so it does not depend on
--     which hit came first;
--   * a disposition label (the name a person picked in GHL, as sent) is mapped by the location's own
--     ghl_integrations.disposition_mapping first, then by the built-in synonyms (map_disposition_label, in
--     20261202020000_add_disposition_mapping.sql); a mapped label is a chosen disposition, an unmapped one
--     leaves the disposition to inference. disposition_label keeps the label behind the row's disposition:
--     the chosen one's, else the latest one sent (the doctor counts labels left unmapped);
--   * raw_payload = {"hits": {"<source>:<md5 of the hit>": <hit as received>, ...}}: each distinct hit's
--     contribution is kept, and the same hit sent twice adds nothing (its outcome is "unchanged");
--   * the link (prospect / contact) is filled when empty, never moved.
-- Race safety: one INSERT ... ON CONFLICT (external_call_id) DO UPDATE per call, the merge written in SQL,
-- so two hits at the same instant give one row (the second waits for the first's row lock, then merges).

CREATE OR REPLACE FUNCTION public.normalize_call_status(raw text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- 'No answer' / 'NO_ANSWER' / 'no-answer' -> 'no-answer' (shared/domain/calls.normalize_call_status)
  SELECT nullif(btrim(regexp_replace(lower(btrim(raw)), '[[:space:]_-]+', '-', 'g'), '-'), '')
$$;

-- Keep in step with shared/domain/calls.TRANSIENT_STATUSES (a test compares them).
CREATE OR REPLACE FUNCTION public.is_transient_call_status(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT status IN ('ringing', 'pending', 'queued', 'initiated', 'in-progress', 'dialing', 'scheduled')
$$;

-- GHL-FACTS' inference (shared/domain/calls.infer_disposition; a test compares them). status is normalised.
-- plpgsql rather than SQL: a SQL function that cannot be inlined is planned again on every call.
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

-- The columns sales_calls and calls share, as one value, so the merge is written once.
CREATE TYPE public.call_fields AS (
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
  raw_payload jsonb,
  disposition_label text
);

-- p_old: the stored row's values (NULL on insert); p_new: what this hit brought.
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

-- Matching: GHL contact id, then E.164 phone, then lower(email); the oldest row wins a tie.
-- plpgsql so the three lookups keep cached plans across calls (a SQL function would be planned every time).
CREATE OR REPLACE FUNCTION public.match_sales_prospect(p_ghl_contact_id text, p_phone text, p_email text)
RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
  found uuid;
  phone_key text := CASE WHEN p_phone ~ '^\+[1-9][0-9]{7,14}$' THEN p_phone ELSE public.normalize_phone_e164(p_phone) END;
BEGIN
  IF p_ghl_contact_id IS NOT NULL THEN
    SELECT id INTO found FROM public.sales_prospects WHERE ghl_contact_id = p_ghl_contact_id
      ORDER BY created_at, id LIMIT 1;
    IF found IS NOT NULL THEN RETURN found; END IF;
  END IF;
  IF phone_key IS NOT NULL THEN
    SELECT id INTO found FROM public.sales_prospects WHERE phone_e164 = phone_key
      ORDER BY created_at, id LIMIT 1;
    IF found IS NOT NULL THEN RETURN found; END IF;
  END IF;
  IF p_email IS NOT NULL THEN
    SELECT id INTO found FROM public.sales_prospects WHERE email_normalized = public.normalize_email(p_email)
      ORDER BY created_at, id LIMIT 1;
  END IF;
  RETURN found;
END $$;

CREATE OR REPLACE FUNCTION public.match_client_contact(p_client_id uuid, p_ghl_contact_id text, p_phone text,
                                                       p_email text)
RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
  found uuid;
  phone_key text := CASE WHEN p_phone ~ '^\+[1-9][0-9]{7,14}$' THEN p_phone ELSE public.normalize_phone_e164(p_phone) END;
BEGIN
  IF p_ghl_contact_id IS NOT NULL THEN
    SELECT id INTO found FROM public.contacts WHERE client_id = p_client_id AND ghl_contact_id = p_ghl_contact_id
      ORDER BY created_at, id LIMIT 1;
    IF found IS NOT NULL THEN RETURN found; END IF;
  END IF;
  IF phone_key IS NOT NULL THEN
    SELECT id INTO found FROM public.contacts
      WHERE client_id = p_client_id AND phone_e164 = phone_key
      ORDER BY created_at, id LIMIT 1;
    IF found IS NOT NULL THEN RETURN found; END IF;
  END IF;
  IF p_email IS NOT NULL THEN
    SELECT id INTO found FROM public.contacts
      WHERE client_id = p_client_id AND email_normalized = public.normalize_email(p_email)
      ORDER BY created_at, id LIMIT 1;
  END IF;
  RETURN found;
END $$;

-- p_call keys: external_call_id (required), location_id, ghl_contact_id, direction, from_number, to_number,
-- call_status, connected, duration_seconds, started_at, disposition, disposition_source ('chosen'|'inferred';
-- a disposition without a source counts as chosen), disposition_label (the disposition's name as sent: mapped
-- here by the location's disposition_mapping, then the built-in synonyms; a mapped label is chosen and beats
-- the disposition sent), notes, transcript, recording_url, contact_phone and
-- contact_email (matching only), raw (the hit as received), source ('webhook'|'import', default 'webhook').
-- Returns {"outcome": "inserted"|"updated"|"unchanged", "id", "table"} or {"outcome": "unknown_location"}.
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

REVOKE EXECUTE ON FUNCTION
  public.normalize_call_status(text), public.is_transient_call_status(text),
  public.infer_call_disposition(text, text, text),
  public.merge_call_fields(public.call_fields, public.call_fields),
  public.match_sales_prospect(text, text, text), public.match_client_contact(uuid, text, text, text),
  public.upsert_call(jsonb)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.normalize_call_status(text), public.is_transient_call_status(text),
  public.infer_call_disposition(text, text, text),
  public.merge_call_fields(public.call_fields, public.call_fields),
  public.match_sales_prospect(text, text, text), public.match_client_contact(uuid, text, text, text),
  public.upsert_call(jsonb)
  TO service_role;
