-- Speed of the call merge (measured one call per transaction: upsert_call of a hit with a phone went from
-- about 1.3-1.4 ms to about 0.6-0.7 ms, of which about 0.3 ms is the commit itself).
-- * infer_call_disposition and the match functions become plpgsql: a SQL-language function that cannot be
--   inlined (these have FROM clauses / several statements) is parsed and planned again on every call, while
--   plpgsql keeps its plans for the life of the connection (PostgREST's pooled connections).
-- * ingest_call_event loses its EXCEPTION block (a subtransaction on every webhook): a delivery the database
--   refuses is logged by the caller through record_rejected_webhook instead.
-- * a phone already in E.164 is used as the match key as is: normalize_phone_e164 (a SQL function with a
--   FROM clause, so planned on every call) returns such a number unchanged anyway.
-- Behaviour is unchanged, except that ingest_call_event now raises on refused values instead of answering
-- {"outcome": "rejected"}.

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
    WHEN t ~* 'call ?back|try again|call later' THEN 'Callback Requested'
    WHEN t ~* 'meeting|schedule|book' THEN 'Meeting Booked'
  END;
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

-- p_call: upsert_call's argument; its "raw" (the hit as received) is what the event log keeps as payload.
-- Returns upsert_call's answer plus "event_id". Values the database refuses (a data or constraint error)
-- abort the whole call; the caller then logs the delivery with record_rejected_webhook (the webhook service
-- does), which keeps the common path free of a subtransaction.
CREATE OR REPLACE FUNCTION public.ingest_call_event(p_call jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_result jsonb;
  v_error text;
  v_event_id bigint;
BEGIN
  v_result := upsert_call(p_call);
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
