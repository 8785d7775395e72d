-- Batch import (process-ghl-import): stage GHL contacts and calls page by page, match them set-based,
-- process them in chunks claimed with FOR UPDATE SKIP LOCKED. Every write the function makes is one rpc.
--
--   create_import_batch      a batch (status processing) for an active integration
--   import_pull_context      the batch plus what the pull needs (the integration's token)
--   stage_import_page        one page of records in, and the pull cursor advanced, in one transaction
--   process_import_chunk     claim up to N open rows, match them, apply them, move the counters
--   fail_import_batch        the batch cannot go on (integration gone, GHL 401)
--   import_batch_summary     id, status and counters of a batch
--   list_open_import_batches the batches a scheduler's "process" advances
--
-- Counters: processed_records = staged rows in a final state (imported, skipped, error) and error_count = rows
-- in error. Only process_import_chunk moves rows to a final state, and it adds what it moved to the counters in
-- the same transaction, so the counters are exactly the row states at every commit (tests recount them).

-- ---------------------------------------------------------------------------------------------
-- Staging additions
-- ---------------------------------------------------------------------------------------------

ALTER TABLE public.ghl_import_staging
  -- the claim order within a kind (contacts and calls are pulled at once; process_import_chunk takes calls only
  -- once every contact of the batch is staged and processed)
  ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
  -- match keys, computed when staged (contacts: their own; calls: the contact's, from the staged contact, filled
  -- again when the call is processed in case the call was staged before its contact)
  ADD COLUMN ghl_contact_id text,
  ADD COLUMN phone_e164 text,
  ADD COLUMN email_normalized text,
  -- which rule matched: ghl_contact_id | phone | email | created (a new prospect/contact was made)
  ADD COLUMN match_rule text,
  -- calls: the upsert_call payload, normalised in Python at pull time (raw_data stays the record as received)
  ADD COLUMN call_payload jsonb,
  -- a record the pull could not normalise: processing turns it into an error with this message
  ADD COLUMN prepare_error text,
  ADD CONSTRAINT ghl_import_staging_match_rule_check
    CHECK (match_rule IN ('ghl_contact_id', 'phone', 'email', 'created'));

-- The claim: the open rows of a batch in staging order (replaces a sort of the whole batch per chunk).
CREATE INDEX ghl_import_staging_open_idx ON public.ghl_import_staging (batch_id, seq)
  WHERE status IN ('pending', 'matched');

-- ---------------------------------------------------------------------------------------------
-- Batches
-- ---------------------------------------------------------------------------------------------

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

CREATE OR REPLACE FUNCTION public.create_import_batch(p_location_id text, p_kinds text[], p_since timestamptz,
                                                      p_created_by uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_id uuid;
  v_kinds text[];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM ghl_integrations WHERE location_id = p_location_id AND is_active IS TRUE) THEN
    RETURN NULL;  -- no active integration for the location: the caller answers 422
  END IF;
  -- kinds in pull order (contacts before calls), without repeats
  v_kinds := ARRAY(SELECT k FROM unnest(ARRAY['contacts', 'calls']) AS k WHERE k = ANY (p_kinds));
  IF cardinality(v_kinds) = 0 OR NOT p_kinds <@ ARRAY['contacts', 'calls'] THEN
    RAISE EXCEPTION 'kinds must be a non-empty list of contacts and/or calls, not %', p_kinds
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO ghl_import_batches (location_id, status, kinds, since, created_by)
  VALUES (p_location_id, 'processing', v_kinds, p_since, p_created_by)
  RETURNING id INTO v_id;
  RETURN import_batch_summary(v_id);
END $$;

-- The batch, its integration's type and token (the pull's GHL client needs it; service_role only).
CREATE OR REPLACE FUNCTION public.import_pull_context(p_batch_id uuid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT import_batch_summary(b.id) || jsonb_build_object(
    'pull_state', b.pull_state, 'integration_active', i.id IS NOT NULL,
    'integration_type', i.integration_type, 'api_token', i.api_token)
  FROM ghl_import_batches b
  LEFT JOIN ghl_integrations i ON i.location_id = b.location_id AND i.is_active IS TRUE
  WHERE b.id = p_batch_id
$$;

CREATE OR REPLACE FUNCTION public.fail_import_batch(p_batch_id uuid, p_reason text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE ghl_import_batches SET status = 'failed', failure_reason = left(p_reason, 1000)
  WHERE id = p_batch_id AND status IN ('pending', 'processing');
  RETURN import_batch_summary(p_batch_id);
END $$;

CREATE OR REPLACE FUNCTION public.list_open_import_batches() RETURNS SETOF uuid
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT id FROM ghl_import_batches WHERE status IN ('pending', 'processing') ORDER BY created_at, id
$$;

-- ---------------------------------------------------------------------------------------------
-- Staging one page
-- ---------------------------------------------------------------------------------------------

-- p_records: [{"external_id", "raw_data", "call_payload"?, "prepare_error"?}, ...] of one kind ('contacts' |
-- 'calls'). The page is staged and the kind's cursor moves from p_expected_state to p_next_state in one
-- transaction, only if the cursor still is p_expected_state: a page re-pulled after a crash, or by a second
-- worker, stages nothing twice (ON CONFLICT on the batch's unique index) and never moves the cursor back.
-- p_kind_done: this page was the kind's last; when every kind is done the pull is complete (total_records).
-- p_warning: added to the batch's warnings with this page (a list that ended before GHL's total).
-- p_pages: the GHL pages p_records came from (a pull that fell behind stages the pages waiting in one call).
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

-- ---------------------------------------------------------------------------------------------
-- Matching (set-based): GHL contact id, then E.164 phone, then lower(email); the oldest row wins a tie
-- (the order upsert_call's match_sales_prospect / match_client_contact use, so a call's link agrees).
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.match_import_rows(p_ids uuid[], p_integration_type text, p_client_id uuid)
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_rule record;
  v_matched integer := 0;
  v_count integer;
BEGIN
  -- The key columns have the same names in staging, sales_prospects and contacts; one statement per rule
  -- (dynamic, so each is planned with its own index).
  FOR v_rule IN SELECT * FROM (VALUES (1, 'ghl_contact_id', 'ghl_contact_id'), (2, 'phone', 'phone_e164'),
                                      (3, 'email', 'email_normalized')) AS r(position, name, key_column)
                ORDER BY position LOOP
    IF p_integration_type = 'internal' THEN
      EXECUTE format($sql$
        UPDATE ghl_import_staging s SET matched_prospect_id = m.target_id, match_rule = %2$L, status = 'matched'
        FROM (
          SELECT DISTINCT ON (s2.id) s2.id AS staging_id, p.id AS target_id
          FROM ghl_import_staging s2
          JOIN sales_prospects p ON p.%1$I = s2.%1$I
          WHERE s2.id = ANY ($1) AND s2.status = 'pending'
          ORDER BY s2.id, p.created_at, p.id
        ) m
        WHERE s.id = m.staging_id$sql$, v_rule.key_column, v_rule.name) USING p_ids;
    ELSE
      EXECUTE format($sql$
        UPDATE ghl_import_staging s SET matched_contact_id = m.target_id, match_rule = %2$L, status = 'matched'
        FROM (
          SELECT DISTINCT ON (s2.id) s2.id AS staging_id, c.id AS target_id
          FROM ghl_import_staging s2
          JOIN contacts c ON c.client_id = $2 AND c.%1$I = s2.%1$I
          WHERE s2.id = ANY ($1) AND s2.status = 'pending'
          ORDER BY s2.id, c.created_at, c.id
        ) m
        WHERE s.id = m.staging_id$sql$, v_rule.key_column, v_rule.name) USING p_ids, p_client_id;
    END IF;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_matched := v_matched + v_count;
  END LOOP;
  RETURN v_matched;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Processing
-- ---------------------------------------------------------------------------------------------

-- Contacts among p_ids (pending = unmatched, matched), set-based: fill the match's ghl_contact_id /
-- ghl_location_id where empty; a different id already there is an error naming both; unmatched ones are
-- skipped, or created when p_create_unmatched. Called for a whole chunk, or row by row when the chunk raised.
CREATE OR REPLACE FUNCTION public.import_apply_contacts(p_ids uuid[], p_location_id text, p_integration_type text,
                                                        p_client_id uuid, p_create_unmatched boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_target regclass := CASE p_integration_type WHEN 'internal' THEN 'sales_prospects' ELSE 'contacts' END;
  v_link text := CASE p_integration_type WHEN 'internal' THEN 'matched_prospect_id' ELSE 'matched_contact_id' END;
  v_noun text := CASE p_integration_type WHEN 'internal' THEN 'prospect' ELSE 'contact' END;
BEGIN
  -- Lock the targets in id order, so two chunks touching the same rows never deadlock.
  EXECUTE format($sql$
    SELECT count(*) FROM (SELECT 1 FROM %1$s t WHERE t.id IN (
      SELECT s.%2$I FROM ghl_import_staging s
      WHERE s.id = ANY ($1) AND s.record_kind = 'contact' AND s.status = 'matched')
    ORDER BY t.id FOR UPDATE OF t) AS locked$sql$, v_target, v_link) USING p_ids;

  -- Never overwrite a different id: report it.
  EXECUTE format($sql$
    UPDATE ghl_import_staging s SET status = 'error', processed_at = now(), error_message = CASE
      WHEN t.ghl_contact_id IS NOT NULL AND t.ghl_contact_id <> s.external_id THEN format(
        'conflicting GHL contact id: %3$s %%s already has GHL contact id %%s; GHL contact %%s (matched by %%s) '
        'was not written over it', t.id, t.ghl_contact_id, s.external_id, s.match_rule)
      ELSE format('conflicting GHL location: %3$s %%s belongs to GHL location %%s, not %%s; GHL contact %%s '
        '(matched by %%s) was not linked', t.id, t.ghl_location_id, $2, s.external_id, s.match_rule) END
    FROM %1$s t
    WHERE s.id = ANY ($1) AND s.record_kind = 'contact' AND s.status = 'matched' AND t.id = s.%2$I
      AND ((t.ghl_contact_id IS NOT NULL AND t.ghl_contact_id <> s.external_id)
        OR (t.ghl_location_id IS NOT NULL AND t.ghl_location_id <> $2))$sql$, v_target, v_link, v_noun)
    USING p_ids, p_location_id;

  -- Two GHL contacts of this chunk matched one row: the first (by staging order) links, the others are errors.
  EXECUTE format($sql$
    UPDATE ghl_import_staging s SET status = 'error', processed_at = now(), error_message = format(
      'conflicting GHL contact id: %2$s %%s is also matched by GHL contact %%s in this batch; GHL contact %%s '
      '(matched by %%s) was not linked', d.target_id, d.winner, s.external_id, s.match_rule)
    FROM (SELECT id, %1$I AS target_id, first_value(external_id) OVER w AS winner, row_number() OVER w AS position
          FROM ghl_import_staging
          WHERE id = ANY ($1) AND record_kind = 'contact' AND status = 'matched'
          WINDOW w AS (PARTITION BY %1$I ORDER BY seq)) d
    WHERE s.id = d.id AND d.position > 1$sql$, v_link, v_noun) USING p_ids;

  EXECUTE format($sql$
    UPDATE %1$s t SET ghl_contact_id = coalesce(t.ghl_contact_id, s.external_id),
                      ghl_location_id = coalesce(t.ghl_location_id, $2)
    FROM ghl_import_staging s
    WHERE s.id = ANY ($1) AND s.record_kind = 'contact' AND s.status = 'matched' AND t.id = s.%2$I
      AND (t.ghl_contact_id IS NULL OR t.ghl_location_id IS NULL)$sql$, v_target, v_link) USING p_ids, p_location_id;
  UPDATE ghl_import_staging SET status = 'imported', processed_at = now(), error_message = NULL
  WHERE id = ANY (p_ids) AND record_kind = 'contact' AND status = 'matched';

  IF p_create_unmatched THEN
    -- New rows carry the GHL contact id, which maps them back to their staging rows (unique per batch).
    IF p_integration_type = 'internal' THEN
      WITH created AS (
        INSERT INTO sales_prospects (first_name, last_name, company_name, email, phone, source, tags,
                                     ghl_contact_id, ghl_location_id)
        SELECT s.raw_data ->> 'firstName', s.raw_data ->> 'lastName', s.raw_data ->> 'companyName',
               s.raw_data ->> 'email', s.raw_data ->> 'phone', 'GHL import',
               CASE WHEN jsonb_typeof(s.raw_data -> 'tags') = 'array'
                    THEN ARRAY(SELECT jsonb_array_elements_text(s.raw_data -> 'tags')) ELSE '{}' END,
               s.external_id, p_location_id
        FROM ghl_import_staging s
        WHERE s.id = ANY (p_ids) AND s.record_kind = 'contact' AND s.status = 'pending'
        RETURNING id, ghl_contact_id)
      UPDATE ghl_import_staging s SET status = 'imported', processed_at = now(), match_rule = 'created',
                                      matched_prospect_id = c.id
      FROM created c
      WHERE s.id = ANY (p_ids) AND s.record_kind = 'contact' AND s.status = 'pending'
        AND s.external_id = c.ghl_contact_id;
    ELSE
      WITH created AS (
        INSERT INTO contacts (client_id, first_name, last_name, company_name, email, phone, source, tags,
                              ghl_contact_id, ghl_location_id)
        SELECT p_client_id, s.raw_data ->> 'firstName', s.raw_data ->> 'lastName', s.raw_data ->> 'companyName',
               s.raw_data ->> 'email', s.raw_data ->> 'phone', 'GHL import',
               CASE WHEN jsonb_typeof(s.raw_data -> 'tags') = 'array'
                    THEN ARRAY(SELECT jsonb_array_elements_text(s.raw_data -> 'tags')) ELSE '{}' END,
               s.external_id, p_location_id
        FROM ghl_import_staging s
        WHERE s.id = ANY (p_ids) AND s.record_kind = 'contact' AND s.status = 'pending'
        RETURNING id, ghl_contact_id)
      UPDATE ghl_import_staging s SET status = 'imported', processed_at = now(), match_rule = 'created',
                                      matched_contact_id = c.id
      FROM created c
      WHERE s.id = ANY (p_ids) AND s.record_kind = 'contact' AND s.status = 'pending'
        AND s.external_id = c.ghl_contact_id;
    END IF;
  ELSE
    UPDATE ghl_import_staging SET status = 'skipped', processed_at = now(),
      error_message = format('no %s matches this GHL contact by id, phone or email', v_noun)
    WHERE id = ANY (p_ids) AND record_kind = 'contact' AND status = 'pending';
  END IF;
END $$;

-- One chunk of one batch, in one transaction: claim up to p_limit open rows (FOR UPDATE SKIP LOCKED: several
-- workers share a batch, each row goes to one), reject malformed ones, match, apply, add to the counters, and
-- complete the batch when nothing is left. A worker killed mid-chunk rolls all of it back; its row locks go
-- with it, and the next call claims the rows again (no lease to wait out).
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

REVOKE EXECUTE ON FUNCTION
  public.import_batch_summary(uuid), public.create_import_batch(text, text[], timestamptz, uuid),
  public.import_pull_context(uuid), public.fail_import_batch(uuid, text), public.list_open_import_batches(),
  public.stage_import_page(uuid, text, jsonb, jsonb, jsonb, boolean, text, integer),
  public.match_import_rows(uuid[], text, uuid),
  public.import_apply_contacts(uuid[], text, text, uuid, boolean),
  public.process_import_chunk(uuid, integer, boolean)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.import_batch_summary(uuid), public.create_import_batch(text, text[], timestamptz, uuid),
  public.import_pull_context(uuid), public.fail_import_batch(uuid, text), public.list_open_import_batches(),
  public.stage_import_page(uuid, text, jsonb, jsonb, jsonb, boolean, text, integer),
  public.match_import_rows(uuid[], text, uuid),
  public.import_apply_contacts(uuid[], text, text, uuid, boolean),
  public.process_import_chunk(uuid, integer, boolean)
  TO service_role;
