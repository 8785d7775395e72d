-- What `ghl-bridge doctor` and process-ghl-import {"action": "health"} read (shared/services/doctor.py).
-- One function per check group, called once per run for all the locations asked about (so at most one round
-- trip per check group per location); each returns {"<location id>": {facts}, ...}. Every query is bounded by
-- an index on the location (the indexes below), never a scan of a whole table. Read-only.
-- A new check group is one function here (same shape) plus one function in shared/services/doctor.py.

-- ---------------------------------------------------------------------------------------------
-- Indexes for the doctor's queries
-- ---------------------------------------------------------------------------------------------

-- Deliveries of a location by time (last accepted, the last 24 h by outcome), outcome read from the index.
CREATE INDEX ghl_webhook_events_location_received_idx
  ON public.ghl_webhook_events (location_id, received_at) INCLUDE (outcome);
-- Calls still missing a hit or a chosen disposition, by location and age (one-hit calls, unmapped labels).
CREATE INDEX sales_calls_unsettled_idx ON public.sales_calls (ghl_location_id, created_at)
  WHERE call_status IS NULL OR disposition_source IS DISTINCT FROM 'chosen';
CREATE INDEX calls_unsettled_idx ON public.calls (ghl_location_id, created_at)
  WHERE call_status IS NULL OR disposition_source IS DISTINCT FROM 'chosen';
-- Prospects GHL has not seen at their current content (the "due" half of prospect_sync_is_eligible), by
-- location: the doctor's due count reads these rows only, not every prospect of the location (the sync's own
-- count and claim can use it too).
CREATE INDEX sales_prospects_unsynced_idx ON public.sales_prospects (ghl_location_id, content_updated_at)
  WHERE ghl_location_id IS NOT NULL
    AND (ghl_contact_id IS NULL OR ghl_synced_at IS NULL OR content_updated_at > ghl_synced_at);
-- Prospects whose last push failed or was skipped, by location.
CREATE INDEX sales_prospects_sync_error_idx ON public.sales_prospects (ghl_location_id)
  WHERE ghl_sync_error IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- The locations to check (all, or one; inactive ones too, so the doctor can say so)
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.doctor_locations(p_location_id text DEFAULT NULL)
RETURNS TABLE (location_id text, name text, integration_type text, is_active boolean, api_token text,
               custom_field_mapping jsonb, disposition_mapping jsonb)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT i.location_id, i.name, i.integration_type, coalesce(i.is_active, false), i.api_token,
         i.custom_field_mapping, i.disposition_mapping
  FROM ghl_integrations i
  WHERE p_location_id IS NULL OR i.location_id = p_location_id
  ORDER BY i.location_id
$$;

-- ---------------------------------------------------------------------------------------------
-- Webhooks: deliveries, rejections, one-hit calls, unmapped disposition labels
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.doctor_webhook_facts(p_location_ids text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb := '{}'::jsonb;
  v_location text;
  v_mapping jsonb;
  v_facts jsonb;
BEGIN
  FOREACH v_location IN ARRAY coalesce(p_location_ids, '{}') LOOP
    SELECT disposition_mapping INTO v_mapping FROM ghl_integrations WHERE location_id = v_location;
    SELECT jsonb_build_object(
      'last_accepted_at', (
        SELECT max(e.received_at) FROM ghl_webhook_events e
        WHERE e.location_id = v_location AND e.outcome IN ('inserted', 'updated', 'unchanged')),
      'last_24h', coalesce((
        SELECT jsonb_object_agg(o.outcome, o.n) FROM (
          SELECT e.outcome, count(*) AS n FROM ghl_webhook_events e
          WHERE e.location_id = v_location AND e.received_at > now() - interval '24 hours'
          GROUP BY e.outcome) o), '{}'::jsonb),
      'rejections_24h', coalesce((
        SELECT jsonb_agg(jsonb_build_object('outcome', r.outcome, 'reason', r.reason, 'count', r.n)
                         ORDER BY r.n DESC, r.reason) FROM (
          SELECT e.outcome, left(coalesce(e.error, '(no reason recorded)'), 200) AS reason, count(*) AS n
          FROM ghl_webhook_events e
          WHERE e.location_id = v_location AND e.received_at > now() - interval '24 hours'
            AND e.outcome IN ('rejected', 'unknown_location')
          GROUP BY 1, 2 ORDER BY n DESC LIMIT 5) r), '[]'::jsonb),
      -- Calls older than an hour (both hits have had time to come) and younger than a week.
      'one_hit', (
        SELECT jsonb_build_object(
          'disposition_only', count(*) FILTER (WHERE c.call_status IS NULL),
          'status_only', count(*) FILTER (WHERE c.call_status IS NOT NULL AND c.disposition_label IS NULL
                                            AND NOT c.imported),
          'examples', coalesce((array_agg(c.external_call_id ORDER BY c.created_at DESC)
                                FILTER (WHERE c.call_status IS NULL
                                           OR (c.disposition_label IS NULL AND NOT c.imported)))[1:3], '{}'))
        FROM (
          SELECT s.external_call_id, s.created_at, s.call_status, s.disposition_label,
                 EXISTS (SELECT 1 FROM jsonb_object_keys(s.raw_payload -> 'hits') k WHERE k LIKE 'import:%')
                   AS imported
          FROM sales_calls s
          WHERE s.ghl_location_id = v_location AND s.created_at BETWEEN now() - interval '7 days'
                                                                     AND now() - interval '1 hour'
            AND (s.call_status IS NULL OR s.disposition_source IS DISTINCT FROM 'chosen')
          UNION ALL
          SELECT s.external_call_id, s.created_at, s.call_status, s.disposition_label,
                 EXISTS (SELECT 1 FROM jsonb_object_keys(s.raw_payload -> 'hits') k WHERE k LIKE 'import:%')
          FROM calls s
          WHERE s.ghl_location_id = v_location AND s.created_at BETWEEN now() - interval '7 days'
                                                                     AND now() - interval '1 hour'
            AND (s.call_status IS NULL OR s.disposition_source IS DISTINCT FROM 'chosen')) c),
      -- Labels stored unmapped in the last 30 days that the CURRENT mapping still does not map (each distinct
      -- label mapped once).
      'unmapped_labels', coalesce((
        SELECT jsonb_agg(jsonb_build_object('label', u.label, 'count', u.n, 'last_seen', u.last_seen)
                         ORDER BY u.n DESC, u.label) FROM (
          SELECT g.label, g.n, g.last_seen FROM (
            SELECT min(l.disposition_label) AS label, count(*) AS n, max(l.created_at) AS last_seen
            FROM (
              SELECT s.disposition_label, s.created_at FROM sales_calls s
              WHERE s.ghl_location_id = v_location AND s.created_at > now() - interval '30 days'
                AND (s.call_status IS NULL OR s.disposition_source IS DISTINCT FROM 'chosen')
                AND s.disposition_label IS NOT NULL
              UNION ALL
              SELECT s.disposition_label, s.created_at FROM calls s
              WHERE s.ghl_location_id = v_location AND s.created_at > now() - interval '30 days'
                AND (s.call_status IS NULL OR s.disposition_source IS DISTINCT FROM 'chosen')
                AND s.disposition_label IS NOT NULL) l
            GROUP BY disposition_label_key(l.disposition_label)) g
          WHERE map_disposition_label(g.label, v_mapping) IS NULL
          ORDER BY g.n DESC LIMIT 10) u), '[]'::jsonb)
    ) INTO v_facts;
    v_result := v_result || jsonb_build_object(v_location, v_facts);
  END LOOP;
  RETURN v_result;
END $$;

-- Deliveries no location can be blamed for, last 24 h: rejected without a location, and location ids with no
-- active integration (a workflow posting another sub-account's id). Uses the received_at index.
CREATE OR REPLACE FUNCTION public.doctor_unattributed_webhook_facts() RETURNS jsonb
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT jsonb_build_object(
    'rejected_without_location', coalesce((
      SELECT jsonb_agg(jsonb_build_object('reason', r.reason, 'count', r.n) ORDER BY r.n DESC, r.reason) FROM (
        SELECT left(coalesce(e.error, '(no reason recorded)'), 200) AS reason, count(*) AS n
        FROM ghl_webhook_events e
        WHERE e.received_at > now() - interval '24 hours' AND e.location_id IS NULL AND e.outcome = 'rejected'
        GROUP BY 1 ORDER BY n DESC LIMIT 5) r), '[]'::jsonb),
    'unknown_locations', coalesce((
      SELECT jsonb_agg(jsonb_build_object('location_id', u.location_id, 'count', u.n) ORDER BY u.n DESC) FROM (
        SELECT e.location_id, count(*) AS n FROM ghl_webhook_events e
        WHERE e.received_at > now() - interval '24 hours' AND e.outcome = 'unknown_location'
          AND NOT EXISTS (SELECT 1 FROM ghl_integrations i WHERE i.location_id = e.location_id)
        GROUP BY 1 ORDER BY n DESC LIMIT 10) u), '[]'::jsonb))
$$;

-- Rejections and unknown locations are rare; this keeps the query above off the 24 h of accepted deliveries.
CREATE INDEX ghl_webhook_events_problems_idx ON public.ghl_webhook_events (received_at)
  WHERE outcome IN ('rejected', 'unknown_location');

-- ---------------------------------------------------------------------------------------------
-- Sync: prospects due (and the oldest), failed and skipped ones with their reasons, the last run
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.doctor_sync_facts(p_location_ids text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb := '{}'::jsonb;
  v_location text;
  v_facts jsonb;
BEGIN
  FOREACH v_location IN ARRAY coalesce(p_location_ids, '{}') LOOP
    SELECT jsonb_build_object(
      'last_synced_at', i.last_synced_at, 'last_sync_status', i.last_sync_status,
      'last_sync_error', left(i.last_sync_error, 500),
      'due', d.n, 'oldest_due_at', d.oldest,
      'failed', f.failed, 'skipped', f.skipped, 'reasons', f.reasons)
    INTO v_facts
    FROM ghl_integrations i,
    LATERAL (
      SELECT count(*) AS n, min(p.content_updated_at) AS oldest FROM sales_prospects p
      WHERE p.ghl_location_id = v_location AND prospect_sync_is_eligible(p)) d,
    LATERAL (
      SELECT coalesce(sum(g.n) FILTER (WHERE g.kind = 'failed'), 0) AS failed,
             coalesce(sum(g.n) FILTER (WHERE g.kind = 'skipped'), 0) AS skipped,
             -- the five commonest reasons
             jsonb_path_query_array(coalesce(jsonb_agg(jsonb_build_object('kind', g.kind, 'reason', g.reason,
                                                                          'count', g.n) ORDER BY g.n DESC, g.reason),
                                             '[]'::jsonb), '$[0 to 4]') AS reasons
      FROM (SELECT CASE WHEN p.ghl_sync_skipped_content_at IS NOT DISTINCT FROM p.content_updated_at
                        THEN 'skipped' ELSE 'failed' END AS kind,
                   left(p.ghl_sync_error, 200) AS reason, count(*) AS n
            FROM sales_prospects p
            WHERE p.ghl_location_id = v_location AND p.ghl_sync_error IS NOT NULL
            GROUP BY 1, 2) g) f
    WHERE i.location_id = v_location;
    v_result := v_result || jsonb_build_object(v_location, v_facts);
  END LOOP;
  RETURN v_result;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Import: batches not finished (age, last progress, counters), batches failed in the last 7 days
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.doctor_import_facts(p_location_ids text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb := '{}'::jsonb;
  v_location text;
BEGIN
  FOREACH v_location IN ARRAY coalesce(p_location_ids, '{}') LOOP
    v_result := v_result || jsonb_build_object(v_location, jsonb_build_object(
      'open', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                 'id', b.id, 'status', b.status, 'created_at', b.created_at, 'updated_at', b.updated_at,
                 'total_records', b.total_records, 'processed_records', b.processed_records,
                 'error_count', b.error_count, 'pull_completed_at', b.pull_completed_at) ORDER BY b.created_at)
        FROM ghl_import_batches b
        WHERE b.location_id = v_location AND b.status IN ('pending', 'processing')), '[]'::jsonb),
      'failed_7d', coalesce((
        SELECT jsonb_agg(jsonb_build_object('id', b.id, 'created_at', b.created_at,
                                            'failure_reason', left(b.failure_reason, 300)) ORDER BY b.created_at DESC)
        FROM ghl_import_batches b
        WHERE b.location_id = v_location AND b.status = 'failed'
          AND b.created_at > now() - interval '7 days'), '[]'::jsonb)));
  END LOOP;
  RETURN v_result;
END $$;

REVOKE EXECUTE ON FUNCTION
  public.doctor_locations(text), public.doctor_webhook_facts(text[]), public.doctor_unattributed_webhook_facts(),
  public.doctor_sync_facts(text[]), public.doctor_import_facts(text[])
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.doctor_locations(text), public.doctor_webhook_facts(text[]), public.doctor_unattributed_webhook_facts(),
  public.doctor_sync_facts(text[]), public.doctor_import_facts(text[])
  TO service_role;
