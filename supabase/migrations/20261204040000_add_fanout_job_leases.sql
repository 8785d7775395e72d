-- Fan-out on Cloud Tasks (docs/deploy.md "Fan-out"): a scheduled run lists the locations with due work of one
-- job (one round trip: due_locations_<job>), and creates one task per location; each task runs that job for
-- that location under a job lease, so one job never has two runners on one location at once.
--
-- Why a lease row and not only the task name: a task name dedupes one time slot, but a slot's task may still
-- run when the next slot's task starts, an operator may run the location by hand, and a retried task may
-- start while a killed worker's run is forgotten. The lease row is the one place all of them meet. It is
-- kept alive by the runner (renew_job_lease every few seconds), so a killed worker's lease ends by itself
-- within fanout_lease_seconds; a runner that finishes releases it at once.

CREATE TABLE public.ghl_job_leases (
  id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  job text NOT NULL,
  location_id text NOT NULL,
  holder uuid NOT NULL,
  leased_until timestamptz NOT NULL,
  taken_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT ghl_job_leases_job_location_key UNIQUE (job, location_id),
  CONSTRAINT ghl_job_leases_job_check CHECK (job ~ '^[a-z][a-z0-9_]{0,39}$')
);

ALTER TABLE public.ghl_job_leases ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.ghl_job_leases FROM anon, authenticated;

-- p_holder takes (or, holding it already, extends) the lease of p_job on p_location_id for p_seconds; true when
-- it holds the lease afterwards. Atomic: two takers at once serialise on the row and the second sees the first.
CREATE OR REPLACE FUNCTION public.take_job_lease(p_job text, p_location_id text, p_holder uuid, p_seconds integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  holder_now uuid;
BEGIN
  IF p_job IS NULL OR p_location_id IS NULL OR p_holder IS NULL THEN
    RAISE EXCEPTION 'take_job_lease: job, location id and holder are required' USING ERRCODE = '22004';
  END IF;
  IF p_seconds IS NULL OR p_seconds < 1 OR p_seconds > 3600 THEN
    RAISE EXCEPTION 'take_job_lease: seconds must be 1-3600' USING ERRCODE = '22023';
  END IF;
  INSERT INTO ghl_job_leases AS l (job, location_id, holder, leased_until)
  VALUES (p_job, p_location_id, p_holder, now() + make_interval(secs => p_seconds))
  ON CONFLICT (job, location_id) DO UPDATE
    SET holder = excluded.holder, leased_until = excluded.leased_until,
        taken_at = CASE WHEN l.holder = excluded.holder THEN l.taken_at ELSE now() END
    WHERE l.leased_until <= now() OR l.holder = excluded.holder
  RETURNING l.holder INTO holder_now;
  RETURN holder_now IS NOT NULL;
END $$;

-- The holder's heartbeat: true while it still holds the lease (false: it ran out and may be someone else's).
CREATE OR REPLACE FUNCTION public.renew_job_lease(p_job text, p_location_id text, p_holder uuid, p_seconds integer)
RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = public, pg_temp AS $$
  WITH renewed AS (
    UPDATE ghl_job_leases SET leased_until = now() + make_interval(secs => greatest(1, least(p_seconds, 3600)))
    WHERE job = p_job AND location_id = p_location_id AND holder = p_holder AND leased_until > now()
    RETURNING 1
  )
  SELECT EXISTS (SELECT 1 FROM renewed)
$$;

-- The runner is done: the next one may start at once. Another holder's lease is never touched.
CREATE OR REPLACE FUNCTION public.release_job_lease(p_job text, p_location_id text, p_holder uuid)
RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = public, pg_temp AS $$
  WITH released AS (
    DELETE FROM ghl_job_leases WHERE job = p_job AND location_id = p_location_id AND holder = p_holder
    RETURNING 1
  )
  SELECT EXISTS (SELECT 1 FROM released)
$$;

-- ---------------------------------------------------------------------------------------------
-- Locations with due work, one function per job (the dispatcher's one round trip). The same criteria as the
-- job's own claims, asked with EXISTS so each location stops at its first due row.
-- ---------------------------------------------------------------------------------------------

-- sync: active internal integrations with a prospect eligible now (prospect_sync_is_eligible).
CREATE OR REPLACE FUNCTION public.due_locations_sync() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT i.location_id
  FROM ghl_integrations i
  WHERE i.is_active IS TRUE AND i.integration_type = 'internal'
    AND EXISTS (SELECT 1 FROM sales_prospects p
                WHERE p.ghl_location_id = i.location_id AND prospect_sync_is_eligible(p))
  ORDER BY i.location_id
$$;

-- enrich: active integrations with a call due now and not claimed (claim_due_calls' criteria, both tables).
CREATE OR REPLACE FUNCTION public.due_locations_enrich() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT i.location_id
  FROM ghl_integrations i
  WHERE i.is_active IS TRUE
    AND (EXISTS (SELECT 1 FROM sales_calls c
                 WHERE c.ghl_location_id = i.location_id AND c.enrichment_status = 'pending'
                   AND c.enrichment_next_attempt_at <= now()
                   AND (c.enrichment_claimed_until IS NULL OR c.enrichment_claimed_until <= now()))
         OR EXISTS (SELECT 1 FROM calls c
                    WHERE c.ghl_location_id = i.location_id AND c.enrichment_status = 'pending'
                      AND c.enrichment_next_attempt_at <= now()
                      AND (c.enrichment_claimed_until IS NULL OR c.enrichment_claimed_until <= now())))
  ORDER BY i.location_id
$$;

-- import: locations with an open batch (an inactive integration's batch too: its task fails the batch).
CREATE OR REPLACE FUNCTION public.due_locations_import() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT DISTINCT b.location_id FROM ghl_import_batches b
  WHERE b.status IN ('pending', 'processing')
  ORDER BY b.location_id
$$;

-- The open batches of one location (a location task of the import job), oldest first.
CREATE OR REPLACE FUNCTION public.list_open_import_batches_of_location(p_location_id text) RETURNS SETOF uuid
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT id FROM ghl_import_batches
  WHERE location_id = p_location_id AND status IN ('pending', 'processing')
  ORDER BY created_at, id
$$;

REVOKE EXECUTE ON FUNCTION
  public.take_job_lease(text, text, uuid, integer),
  public.renew_job_lease(text, text, uuid, integer),
  public.release_job_lease(text, text, uuid),
  public.due_locations_sync(),
  public.due_locations_enrich(),
  public.due_locations_import(),
  public.list_open_import_batches_of_location(text)
FROM PUBLIC, anon, authenticated;

GRANT EXECUTE ON FUNCTION
  public.take_job_lease(text, text, uuid, integer),
  public.renew_job_lease(text, text, uuid, integer),
  public.release_job_lease(text, text, uuid),
  public.due_locations_sync(),
  public.due_locations_enrich(),
  public.due_locations_import(),
  public.list_open_import_batches_of_location(text)
TO service_role;
