-- Prospect sync (portal -> GHL contacts): what is due, lease-based claims, per-prospect results, the run's
-- status on the integration. Called by sync-prospects-to-ghl through PostgREST rpc, one round trip each.
--
-- A prospect is due when it has a location and GHL has not seen its current content:
--   ghl_contact_id IS NULL OR ghl_synced_at IS NULL OR content_updated_at > ghl_synced_at
-- ghl_synced_at holds the content_updated_at that was pushed (read at claim time), so an edit made while a
-- push is in flight leaves the prospect due and the next run pushes it again.
-- It is eligible now when it is not waiting out a failure backoff, not leased by a live run, and not
-- skipped at this very content (a prospect GHL cannot match, e.g. no email and no phone).

-- addition: the content_updated_at at which the prospect was skipped; an edit makes it eligible again.
ALTER TABLE public.sales_prospects ADD COLUMN ghl_sync_skipped_content_at timestamptz;

CREATE OR REPLACE FUNCTION public.prospect_sync_is_eligible(p public.sales_prospects)
RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT p.ghl_location_id IS NOT NULL
     AND (p.ghl_contact_id IS NULL OR p.ghl_synced_at IS NULL OR p.content_updated_at > p.ghl_synced_at)
     AND (p.ghl_sync_next_attempt_at IS NULL OR p.ghl_sync_next_attempt_at <= now())
     AND (p.ghl_sync_claimed_until IS NULL OR p.ghl_sync_claimed_until <= now())
     AND p.ghl_sync_skipped_content_at IS DISTINCT FROM p.content_updated_at
$$;

-- Active internal integrations to sync (all, or the one asked for). The token is needed to call GHL.
CREATE OR REPLACE FUNCTION public.list_sync_integrations(p_location_id text DEFAULT NULL)
RETURNS TABLE (location_id text, name text, api_token text, custom_field_mapping jsonb)
LANGUAGE sql STABLE AS $$
  SELECT i.location_id, i.name, i.api_token, i.custom_field_mapping
  FROM public.ghl_integrations i
  WHERE i.is_active IS TRUE
    AND i.integration_type = 'internal'
    AND (p_location_id IS NULL OR i.location_id = p_location_id)
  ORDER BY i.location_id
$$;

-- How many prospects of a location are eligible now (the run summary's "due"). Read-only.
CREATE OR REPLACE FUNCTION public.count_due_prospects(p_location_id text, p_campaign text DEFAULT NULL)
RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT count(*)::integer
  FROM public.sales_prospects p
  WHERE p.ghl_location_id = p_location_id
    AND (p_campaign IS NULL OR p.campaign = p_campaign)
    AND public.prospect_sync_is_eligible(p)
$$;

-- The same rows a claim would take, without claiming them (dry runs). Read-only.
CREATE OR REPLACE FUNCTION public.list_due_prospects(p_location_id text, p_campaign text DEFAULT NULL,
                                                     p_limit integer DEFAULT 100)
RETURNS SETOF public.sales_prospects
LANGUAGE sql STABLE AS $$
  SELECT p.*
  FROM public.sales_prospects p
  WHERE p.ghl_location_id = p_location_id
    AND (p_campaign IS NULL OR p.campaign = p_campaign)
    AND public.prospect_sync_is_eligible(p)
  ORDER BY p.content_updated_at, p.id
  LIMIT greatest(coalesce(p_limit, 100), 0)
$$;

-- Claim up to p_limit eligible prospects for p_lease_seconds under p_claim_id and return them.
-- SKIP LOCKED: a concurrent claim takes other rows instead of waiting; once committed, a claim
-- (ghl_sync_claimed_until in the future) keeps the row out of every other claim until it expires
-- (a crashed run's claim expires by itself).
CREATE OR REPLACE FUNCTION public.claim_due_prospects(p_location_id text, p_claim_id uuid,
                                                      p_lease_seconds integer, p_limit integer,
                                                      p_campaign text DEFAULT NULL)
RETURNS SETOF public.sales_prospects
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF p_location_id IS NULL OR p_claim_id IS NULL THEN
    RAISE EXCEPTION 'claim_due_prospects: location id and claim id are required' USING ERRCODE = '22004';
  END IF;
  IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_limit IS NULL OR p_limit < 1 THEN
    RAISE EXCEPTION 'claim_due_prospects: lease seconds and limit must be at least 1' USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
  WITH due AS (
    SELECT p.id
    FROM public.sales_prospects p
    WHERE p.ghl_location_id = p_location_id
      AND (p_campaign IS NULL OR p.campaign = p_campaign)
      AND public.prospect_sync_is_eligible(p)
    ORDER BY p.content_updated_at, p.id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  )
  UPDATE public.sales_prospects p
  SET ghl_sync_claim_id = p_claim_id,
      ghl_sync_claimed_until = now() + make_interval(secs => p_lease_seconds)
  FROM due
  WHERE p.id = due.id
  RETURNING p.*;
END $$;

-- Record what GHL answered, for prospects still claimed by p_claim_id (a result for a prospect whose claim
-- expired and was taken by another run is ignored: that run writes it). p_results is a JSON array of
--   {"id": uuid, "outcome": "pushed"|"failed"|"skipped"|"released", "content_updated_at": timestamptz,
--    "ghl_contact_id": text, "error": text}
-- pushed:   ghl_contact_id, ghl_synced_at = the content_updated_at read at claim time; error cleared
-- failed:   error kept, attempts + 1, next attempt after p_backoff_base_seconds * 2^attempts (capped)
-- skipped:  error kept (why), not eligible again until the prospect is edited
-- released: nothing happened (run stopped before pushing it); the claim is dropped, eligible at once
-- Every outcome releases the claim. Returns the number of prospects written.
CREATE OR REPLACE FUNCTION public.record_prospect_sync_results(p_claim_id uuid, p_results jsonb,
                                                               p_backoff_base_seconds integer DEFAULT 60,
                                                               p_backoff_cap_seconds integer DEFAULT 3600)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  written integer;
BEGIN
  IF p_claim_id IS NULL THEN
    RAISE EXCEPTION 'record_prospect_sync_results: claim id is required' USING ERRCODE = '22004';
  END IF;
  IF p_results IS NULL OR jsonb_typeof(p_results) <> 'array' THEN
    RAISE EXCEPTION 'record_prospect_sync_results: results must be a JSON array' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_results) e
             WHERE e->>'outcome' IS NULL OR e->>'outcome' NOT IN ('pushed', 'failed', 'skipped', 'released')
                OR e->>'id' IS NULL
                OR (e->>'outcome' = 'pushed' AND (coalesce(e->>'ghl_contact_id', '') = ''
                                                   OR e->>'content_updated_at' IS NULL))
                OR (e->>'outcome' = 'skipped' AND e->>'content_updated_at' IS NULL)) THEN
    RAISE EXCEPTION 'record_prospect_sync_results: every result needs an id and an outcome (pushed|failed|skipped|released); pushed needs ghl_contact_id and content_updated_at, skipped needs content_updated_at'
      USING ERRCODE = '22023';
  END IF;

  WITH r AS (
    SELECT * FROM jsonb_to_recordset(p_results)
      AS x(id uuid, outcome text, content_updated_at timestamptz, ghl_contact_id text, error text)
  )
  UPDATE public.sales_prospects p
  SET ghl_contact_id = CASE WHEN r.outcome = 'pushed' THEN r.ghl_contact_id ELSE p.ghl_contact_id END,
      ghl_synced_at = CASE WHEN r.outcome = 'pushed' THEN r.content_updated_at ELSE p.ghl_synced_at END,
      ghl_sync_error = CASE r.outcome WHEN 'pushed' THEN NULL
                                      WHEN 'released' THEN p.ghl_sync_error
                                      ELSE left(coalesce(r.error, r.outcome), 2000) END,
      ghl_sync_attempts = CASE r.outcome WHEN 'pushed' THEN 0
                                         WHEN 'failed' THEN p.ghl_sync_attempts + 1
                                         ELSE p.ghl_sync_attempts END,
      ghl_sync_next_attempt_at = CASE r.outcome
        WHEN 'failed' THEN now() + make_interval(secs => least(
          p_backoff_cap_seconds::double precision,
          p_backoff_base_seconds * power(2::double precision, least(p.ghl_sync_attempts, 30))))
        WHEN 'released' THEN p.ghl_sync_next_attempt_at
        ELSE NULL END,
      ghl_sync_skipped_content_at = CASE r.outcome WHEN 'skipped' THEN r.content_updated_at
                                                   WHEN 'released' THEN p.ghl_sync_skipped_content_at
                                                   ELSE NULL END,
      ghl_sync_claim_id = NULL,
      ghl_sync_claimed_until = NULL
  FROM r
  WHERE p.id = r.id
    AND p.ghl_sync_claim_id = p_claim_id;
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END $$;

-- The run's outcome on the integration: last_synced_at, last_sync_status, last_sync_error.
CREATE OR REPLACE FUNCTION public.finish_prospect_sync_run(p_location_id text, p_status text, p_error text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF p_status IS NULL OR p_status NOT IN ('success', 'partial', 'failed') THEN
    RAISE EXCEPTION 'finish_prospect_sync_run: status must be success, partial or failed, not %', p_status
      USING ERRCODE = '22023';
  END IF;
  UPDATE public.ghl_integrations
  SET last_synced_at = now(), last_sync_status = p_status, last_sync_error = left(p_error, 4000)
  WHERE location_id = p_location_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'finish_prospect_sync_run: no integration for location %', p_location_id USING ERRCODE = '22023';
  END IF;
END $$;

-- A partial index for the claims' lookup of leased / backed-off rows is not needed: the due index
-- (ghl_location_id, content_updated_at) already narrows to one location in content order.

REVOKE EXECUTE ON FUNCTION
  public.prospect_sync_is_eligible(public.sales_prospects),
  public.list_sync_integrations(text),
  public.count_due_prospects(text, text),
  public.list_due_prospects(text, text, integer),
  public.claim_due_prospects(text, uuid, integer, integer, text),
  public.record_prospect_sync_results(uuid, jsonb, integer, integer),
  public.finish_prospect_sync_run(text, text, text)
FROM PUBLIC, anon, authenticated;

GRANT EXECUTE ON FUNCTION
  public.prospect_sync_is_eligible(public.sales_prospects),
  public.list_sync_integrations(text),
  public.count_due_prospects(text, text),
  public.list_due_prospects(text, text, integer),
  public.claim_due_prospects(text, uuid, integer, integer, text),
  public.record_prospect_sync_results(uuid, jsonb, integer, integer),
  public.finish_prospect_sync_run(text, text, text)
TO service_role;
