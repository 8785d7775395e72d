-- The call webhook's single round trip: record the delivery in the append-only event log and merge the
-- call (public.upsert_call), in one transaction. Rejected deliveries (not JSON, no call id, a wrong type)
-- are logged by record_rejected_webhook, also one round trip. Values the database refuses (a data or
-- constraint error) abort ingest_call_event; the caller then logs the delivery with record_rejected_webhook,
-- which keeps the common path free of a subtransaction.
--
-- p_call: upsert_call's argument; its "raw" (the hit as received) is what the event log keeps as payload.
-- The spool replay (shared/services/replay_spool.py) sends a delivery kept while the database was unreachable
-- through the same two functions, with:
--   p_received_at  when the webhook received it (the event log keeps the ORIGINAL time, not the replay's);
--   p_spool_key    the spool object it came from: an object already recorded is not recorded again (a replay
--                  that died between the ingest and the object's deletion, or two replays at once), so
--                  replaying twice changes nothing.

-- Returns upsert_call's answer plus "event_id"; for an already recorded spool object, that record's outcome,
-- call row and event id with "already_recorded": true (nothing is written).
CREATE OR REPLACE FUNCTION public.ingest_call_event(p_call jsonb, p_received_at timestamptz DEFAULT NULL,
                                         p_spool_key text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb;
  v_error text;
  v_event_id bigint;
  v_prior record;
BEGIN
  IF p_spool_key IS NOT NULL THEN
    -- two replays of one object wait for each other here; the second then finds the first one's event
    PERFORM pg_advisory_xact_lock(hashtextextended('ghl_webhook_spool:' || p_spool_key, 0));
    SELECT id, outcome, error, call_row_id INTO v_prior FROM ghl_webhook_events WHERE spool_key = p_spool_key;
    IF FOUND THEN
      RETURN jsonb_build_object('outcome', v_prior.outcome, 'id', v_prior.call_row_id, 'error', v_prior.error,
                                'event_id', v_prior.id, 'already_recorded', true);
    END IF;
  END IF;
  v_result := upsert_call(p_call);
  IF v_result ->> 'outcome' = 'unknown_location' THEN
    v_error := format('no active GHL integration for location %s',
                      coalesce(nullif(p_call ->> 'location_id', ''), '(none sent)'));
    v_result := v_result || jsonb_build_object('error', v_error);
  END IF;
  INSERT INTO ghl_webhook_events (received_at, location_id, call_id, payload, outcome, error, call_row_id, spool_key)
  VALUES (coalesce(p_received_at, now()), nullif(p_call ->> 'location_id', ''),
          nullif(p_call ->> 'external_call_id', ''), p_call -> 'raw', v_result ->> 'outcome', v_error,
          (v_result ->> 'id')::uuid, p_spool_key)
  RETURNING id INTO v_event_id;
  RETURN v_result || jsonb_build_object('event_id', v_event_id);
END $$;

-- Returns the event id (the existing one for an already recorded spool object).
CREATE OR REPLACE FUNCTION public.record_rejected_webhook(p_raw_body text, p_error text, p_payload jsonb DEFAULT NULL,
                                               p_location_id text DEFAULT NULL, p_call_id text DEFAULT NULL,
                                               p_received_at timestamptz DEFAULT NULL,
                                               p_spool_key text DEFAULT NULL,
                                               p_raw_body_bytes bytea DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_event_id bigint;
BEGIN
  IF p_spool_key IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('ghl_webhook_spool:' || p_spool_key, 0));
    SELECT id INTO v_event_id FROM ghl_webhook_events WHERE spool_key = p_spool_key;
    IF FOUND THEN
      RETURN v_event_id;
    END IF;
  END IF;
  INSERT INTO ghl_webhook_events (received_at, location_id, call_id, payload, raw_body, raw_body_bytes, outcome,
                                  error, spool_key)
  VALUES (coalesce(p_received_at, now()), nullif(p_location_id, ''), nullif(p_call_id, ''), p_payload, p_raw_body,
          p_raw_body_bytes, 'rejected', p_error, p_spool_key)
  RETURNING id INTO v_event_id;
  RETURN v_event_id;
END $$;

REVOKE EXECUTE ON FUNCTION public.ingest_call_event(jsonb, timestamptz, text),
  public.record_rejected_webhook(text, text, jsonb, text, text, timestamptz, text, bytea)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.ingest_call_event(jsonb, timestamptz, text),
  public.record_rejected_webhook(text, text, jsonb, text, text, timestamptz, text, bytea) TO service_role;
