-- The fan-out's list for the analyze job (shared/services/fanout.py JOBS, 20261204040000's due_locations_<job>):
-- active integrations with analysis on that have a call due now and not claimed (claim_due_analyses'
-- criteria, both tables), or pending calls waiting in a Message Batch whose results a run collects.
CREATE OR REPLACE FUNCTION public.due_locations_analyze() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT i.location_id
  FROM ghl_integrations i
  WHERE i.is_active IS TRUE AND i.call_analysis_enabled
    AND (EXISTS (SELECT 1 FROM sales_calls c
                 WHERE c.ghl_location_id = i.location_id AND c.analysis_status = 'pending'
                   AND (c.analysis_batch_id IS NOT NULL
                        OR (c.analysis_next_attempt_at <= now()
                            AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now()))))
         OR EXISTS (SELECT 1 FROM calls c
                    WHERE c.ghl_location_id = i.location_id AND c.analysis_status = 'pending'
                      AND (c.analysis_batch_id IS NOT NULL
                           OR (c.analysis_next_attempt_at <= now()
                               AND (c.analysis_claimed_until IS NULL OR c.analysis_claimed_until <= now())))))
  ORDER BY i.location_id
$$;

REVOKE EXECUTE ON FUNCTION public.due_locations_analyze() FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.due_locations_analyze() TO service_role;
