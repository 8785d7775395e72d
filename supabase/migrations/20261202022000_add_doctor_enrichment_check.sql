-- The doctor's enrichment group (shared/services/doctor.py enrichment_checks): per location, the backlog of calls
-- waiting for a transcript or recording and the calls given up on in the last 7 days, with their reasons.
-- Reads only the partial indexes (pending rows, unavailable rows), never the whole call tables: 'done' calls,
-- which grow with every call, are not counted here.

CREATE INDEX sales_calls_enrichment_unavailable_idx ON public.sales_calls (ghl_location_id, updated_at)
  WHERE enrichment_status = 'unavailable';
CREATE INDEX calls_enrichment_unavailable_idx ON public.calls (ghl_location_id, updated_at)
  WHERE enrichment_status = 'unavailable';

CREATE OR REPLACE FUNCTION public.doctor_enrichment_facts(p_location_ids text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb := '{}'::jsonb;
  v_location text;
BEGIN
  FOREACH v_location IN ARRAY coalesce(p_location_ids, '{}') LOOP
    v_result := v_result || jsonb_build_object(v_location, (
      WITH pending AS (
        SELECT enrichment_next_attempt_at AS next_at, enrichment_claimed_until AS claimed_until,
               enrichment_requested_at AS requested_at
        FROM sales_calls WHERE ghl_location_id = v_location AND enrichment_status = 'pending'
        UNION ALL
        SELECT enrichment_next_attempt_at, enrichment_claimed_until, enrichment_requested_at
        FROM calls WHERE ghl_location_id = v_location AND enrichment_status = 'pending'
      ), unavailable AS (
        SELECT coalesce(enrichment_last_error, '(no reason recorded)') AS reason
        FROM sales_calls WHERE ghl_location_id = v_location AND enrichment_status = 'unavailable'
          AND updated_at > now() - interval '7 days'
        UNION ALL
        SELECT coalesce(enrichment_last_error, '(no reason recorded)')
        FROM calls WHERE ghl_location_id = v_location AND enrichment_status = 'unavailable'
          AND updated_at > now() - interval '7 days'
      )
      SELECT jsonb_build_object(
        'pending', (SELECT count(*) FROM pending),
        'overdue', (SELECT count(*) FROM pending WHERE next_at <= now() - interval '15 minutes'
                      AND (claimed_until IS NULL OR claimed_until <= now())),
        'oldest_pending_since', (SELECT min(requested_at) FROM pending),
        'unavailable_7d', (SELECT count(*) FROM unavailable),
        'unavailable_reasons', coalesce((
          SELECT jsonb_object_agg(reason, n) FROM (
            SELECT left(reason, 200) AS reason, count(*) AS n FROM unavailable
            GROUP BY 1 ORDER BY 2 DESC LIMIT 5) top), '{}'::jsonb))));
  END LOOP;
  RETURN v_result;
END $$;

REVOKE EXECUTE ON FUNCTION public.doctor_enrichment_facts(text[]) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.doctor_enrichment_facts(text[]) TO service_role;
