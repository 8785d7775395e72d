-- The doctor's analysis group (shared/services/doctor.py analysis_checks) and the figures of
-- `ghl-bridge analyze --json`: per location, the backlog (due, in Message Batches, overdue), calls failed in the
-- last 24 h with their reasons, what the last 24 h cost in tokens (live and batched, priced by the caller from its
-- settings), and how often the AI's disposition and the regex inference disagreed. Reads the partial indexes of
-- 20261204050000 (pending rows; done/failed rows by analysed_at), never the whole call tables.

CREATE OR REPLACE FUNCTION public.doctor_analysis_facts(p_location_ids text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb := '{}'::jsonb;
  v_location text;
BEGIN
  FOREACH v_location IN ARRAY coalesce(p_location_ids, '{}') LOOP
    v_result := v_result || jsonb_build_object(v_location, (
      WITH pending AS (
        SELECT analysis_next_attempt_at AS next_at, analysis_claimed_until AS claimed_until,
               analysis_requested_at AS requested_at, analysis_batch_id AS batch_id
        FROM sales_calls WHERE ghl_location_id = v_location AND analysis_status = 'pending'
        UNION ALL
        SELECT analysis_next_attempt_at, analysis_claimed_until, analysis_requested_at, analysis_batch_id
        FROM calls WHERE ghl_location_id = v_location AND analysis_status = 'pending'
      ), ended AS (
        SELECT analysis_status AS status, analysis_reason AS reason, analysis_batched AS batched,
               analysis_input_tokens AS input_tokens, analysis_output_tokens AS output_tokens,
               ai_summary ->> 'disposition' AS ai_disposition, analysis_regex_disposition AS regex_disposition
        FROM sales_calls WHERE ghl_location_id = v_location AND analysis_status IN ('done', 'failed')
          AND analysed_at > now() - interval '24 hours'
        UNION ALL
        SELECT analysis_status, analysis_reason, analysis_batched, analysis_input_tokens, analysis_output_tokens,
               ai_summary ->> 'disposition', analysis_regex_disposition
        FROM calls WHERE ghl_location_id = v_location AND analysis_status IN ('done', 'failed')
          AND analysed_at > now() - interval '24 hours'
      )
      SELECT jsonb_build_object(
        'enabled', (SELECT call_analysis_enabled FROM ghl_integrations WHERE location_id = v_location),
        'pending', (SELECT count(*) FROM pending),
        'in_batches', (SELECT count(*) FROM pending WHERE batch_id IS NOT NULL),
        'batches', (SELECT count(DISTINCT batch_id) FROM pending WHERE batch_id IS NOT NULL),
        'overdue', (SELECT count(*) FROM pending WHERE batch_id IS NULL AND next_at <= now() - interval '15 minutes'
                      AND (claimed_until IS NULL OR claimed_until <= now())),
        'oldest_pending_since', (SELECT min(requested_at) FROM pending),
        'done_24h', (SELECT count(*) FROM ended WHERE status = 'done'),
        'failed_24h', (SELECT count(*) FROM ended WHERE status = 'failed'),
        'failed_reasons', coalesce((
          SELECT jsonb_object_agg(reason, n) FROM (
            SELECT left(coalesce(reason, '(no reason recorded)'), 200) AS reason, count(*) AS n FROM ended
            WHERE status = 'failed' GROUP BY 1 ORDER BY 2 DESC LIMIT 5) top), '{}'::jsonb),
        'tokens_24h', (SELECT jsonb_build_object(
            'live_input', coalesce(sum(input_tokens) FILTER (WHERE batched IS NOT TRUE), 0),
            'live_output', coalesce(sum(output_tokens) FILTER (WHERE batched IS NOT TRUE), 0),
            'batch_input', coalesce(sum(input_tokens) FILTER (WHERE batched), 0),
            'batch_output', coalesce(sum(output_tokens) FILTER (WHERE batched), 0)) FROM ended),
        'dispositions_24h', (SELECT jsonb_build_object(
            'compared', count(*) FILTER (WHERE regex_disposition IS NOT NULL AND ai_disposition IS NOT NULL),
            'disagreed', count(*) FILTER (WHERE regex_disposition IS NOT NULL AND ai_disposition IS NOT NULL
                                            AND regex_disposition <> ai_disposition),
            'regex_none', count(*) FILTER (WHERE regex_disposition IS NULL AND ai_disposition IS NOT NULL))
          FROM ended WHERE status = 'done'))));
  END LOOP;
  RETURN v_result;
END $$;

REVOKE EXECUTE ON FUNCTION public.doctor_analysis_facts(text[]) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.doctor_analysis_facts(text[]) TO service_role;
