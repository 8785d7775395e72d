-- The call webhook's single round trip: record the delivery in the append-only event log and merge the
-- call (public.upsert_call), in one transaction. Rejected deliveries (not JSON, no call id, a wrong type)
-- are logged by record_rejected_webhook, also one round trip.

-- p_call: upsert_call's argument; its "raw" (the hit as received) is what the event log keeps as payload.
-- Returns upsert_call's answer plus "event_id"; {"outcome": "rejected", "error": ...} when the database
-- refused the values (a data or constraint error), the delivery still being logged.
CREATE OR REPLACE FUNCTION public.ingest_call_event(p_call jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb;
  v_error text;
  v_event_id bigint;
BEGIN
  BEGIN
    v_result := upsert_call(p_call);
  EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
    v_error := SQLERRM;
    v_result := jsonb_build_object('outcome', 'rejected', 'error', v_error);
  END;
  IF v_result ->> 'outcome' = 'unknown_location' THEN
    v_error := format('no active GHL integration for location %s',
                      coalesce(nullif(p_call ->> 'location_id', ''), '(none sent)'));
    v_result := v_result || jsonb_build_object('error', v_error);
  END IF;
  INSERT INTO ghl_webhook_events (location_id, call_id, payload, outcome, error, call_row_id)
  VALUES (nullif(p_call ->> 'location_id', ''), nullif(p_call ->> 'external_call_id', ''), p_call -> 'raw',
          v_result ->> 'outcome', v_error, (v_result ->> 'id')::uuid)
  RETURNING id INTO v_event_id;
  RETURN v_result || jsonb_build_object('event_id', v_event_id);
END $$;

CREATE OR REPLACE FUNCTION public.record_rejected_webhook(p_raw_body text, p_error text,
                                                          p_payload jsonb DEFAULT NULL,
                                                          p_location_id text DEFAULT NULL,
                                                          p_call_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = public, pg_temp AS $$
  INSERT INTO ghl_webhook_events (location_id, call_id, payload, raw_body, outcome, error)
  VALUES (nullif(p_location_id, ''), nullif(p_call_id, ''), p_payload, p_raw_body, 'rejected', p_error)
  RETURNING id
$$;

REVOKE EXECUTE ON FUNCTION public.ingest_call_event(jsonb),
  public.record_rejected_webhook(text, text, jsonb, text, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.ingest_call_event(jsonb),
  public.record_rejected_webhook(text, text, jsonb, text, text) TO service_role;
