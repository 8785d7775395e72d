-- Onboarding a location in one command (`ghl-bridge location add`, ghl_bridge/locations.py and
-- shared/services/onboarding.py): the token is checked against GHL before anything is stored, and what GHL said
-- about the location is kept next to the integration.
--
--   location_name     the sub-account's name in GHL (GET /locations/{id} .name); `name` stays the operator's own
--   time_zone         the sub-account's IANA time zone (.timezone); resolves spoken times ("call me at 3") of
--                     its calls in call analysis
--   token_checked_at  when GHL last accepted api_token for this location (add, rotate-token)

ALTER TABLE public.ghl_integrations
  ADD COLUMN location_name text,
  ADD COLUMN time_zone text,
  ADD COLUMN token_checked_at timestamptz;

-- Insert or update one integration in one round trip. Running it again with the same values changes no setting
-- (outcome 'unchanged'); only token_checked_at (and updated_at) move, since the token was checked again.
-- custom_field_mapping: the proposed entries, with the entries already stored winning (an operator's
-- `location map` is never undone by adding the location again). p_name NULL keeps the stored name (a new row
-- takes GHL's); p_integration_type NULL keeps the stored type and client (a new row: internal).
-- Returns {"outcome": "inserted" | "updated" | "unchanged", "integration": {the row without api_token}}.
CREATE OR REPLACE FUNCTION public.upsert_ghl_integration(
  p_location_id text, p_api_token text, p_name text, p_integration_type text, p_client_id uuid,
  p_location_name text, p_time_zone text, p_custom_field_mapping jsonb, p_token_checked_at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  v_old ghl_integrations%ROWTYPE;
  v_new ghl_integrations%ROWTYPE;
  v_outcome text;
  v_mapping jsonb;
  v_type text;
  v_client uuid;
BEGIN
  IF coalesce(btrim(p_location_id), '') = '' OR coalesce(btrim(p_api_token), '') = '' THEN
    RAISE EXCEPTION 'a location id and a token are required' USING ERRCODE = '22023';
  END IF;
  IF p_client_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM clients WHERE id = p_client_id) THEN
    RAISE EXCEPTION 'no portal client has the id % (clients.id)', p_client_id USING ERRCODE = '23503';
  END IF;
  SELECT * INTO v_old FROM ghl_integrations WHERE location_id = p_location_id FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO ghl_integrations (location_id, api_token, name, integration_type, client_id, location_name, time_zone,
                                  custom_field_mapping, token_checked_at)
    VALUES (p_location_id, p_api_token, coalesce(p_name, p_location_name), coalesce(p_integration_type, 'internal'),
            p_client_id,
            p_location_name, p_time_zone, nullif(coalesce(p_custom_field_mapping, '{}'::jsonb), '{}'::jsonb),
            p_token_checked_at)
    RETURNING * INTO v_new;
    v_outcome := 'inserted';
  ELSE
    -- no type given: the stored type and client stay; internal: no client
    v_type := coalesce(p_integration_type, v_old.integration_type);
    v_client := CASE WHEN p_integration_type IS NULL THEN v_old.client_id
                     WHEN p_integration_type = 'internal' THEN NULL ELSE p_client_id END;
    v_mapping := nullif(coalesce(p_custom_field_mapping, '{}'::jsonb) || coalesce(v_old.custom_field_mapping, '{}'::jsonb),
                        '{}'::jsonb);
    IF (v_old.api_token, coalesce(p_name, v_old.name), v_old.integration_type, v_old.client_id, v_old.location_name,
        v_old.time_zone, v_old.custom_field_mapping)
       IS NOT DISTINCT FROM
       (p_api_token, coalesce(p_name, v_old.name), v_type, v_client, p_location_name, p_time_zone,
        v_mapping) THEN
      -- same configuration: only the time of the check moves
      UPDATE ghl_integrations SET token_checked_at = p_token_checked_at WHERE id = v_old.id RETURNING * INTO v_new;
      v_outcome := 'unchanged';
    ELSE
      UPDATE ghl_integrations
        SET api_token = p_api_token, name = coalesce(p_name, v_old.name), integration_type = v_type,
            client_id = v_client, location_name = p_location_name, time_zone = p_time_zone,
            custom_field_mapping = v_mapping, token_checked_at = p_token_checked_at
        WHERE id = v_old.id RETURNING * INTO v_new;
      v_outcome := 'updated';
    END IF;
  END IF;
  RETURN jsonb_build_object('outcome', v_outcome, 'integration', to_jsonb(v_new) - 'api_token');
END $$;

-- Change one integration (NULL arguments leave a column as it is): enable/disable, a new token that GHL
-- accepted (with what GHL said about the location), custom_field_mapping entries added or replaced
-- (`location map`; an entry whose value is JSON null is removed). Returns the row without api_token, or NULL
-- when the location has no integration.
CREATE OR REPLACE FUNCTION public.update_ghl_integration(
  p_location_id text, p_is_active boolean DEFAULT NULL, p_api_token text DEFAULT NULL,
  p_location_name text DEFAULT NULL, p_time_zone text DEFAULT NULL, p_token_checked_at timestamptz DEFAULT NULL,
  p_mapping_entries jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  v_row ghl_integrations%ROWTYPE;
BEGIN
  IF p_mapping_entries IS NOT NULL AND jsonb_typeof(p_mapping_entries) <> 'object' THEN
    RAISE EXCEPTION 'mapping entries must be a JSON object' USING ERRCODE = '22023';
  END IF;
  UPDATE ghl_integrations i
    SET is_active = coalesce(p_is_active, i.is_active),
        api_token = coalesce(nullif(btrim(p_api_token), ''), i.api_token),
        location_name = coalesce(p_location_name, i.location_name),
        time_zone = coalesce(p_time_zone, i.time_zone),
        token_checked_at = coalesce(p_token_checked_at, i.token_checked_at),
        custom_field_mapping = CASE WHEN p_mapping_entries IS NULL THEN i.custom_field_mapping
          ELSE nullif(jsonb_strip_nulls(coalesce(i.custom_field_mapping, '{}'::jsonb) || p_mapping_entries),
                      '{}'::jsonb) END
    WHERE i.location_id = p_location_id
    RETURNING * INTO v_row;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN to_jsonb(v_row) - 'api_token';
END $$;

-- `ghl-bridge location list`: every integration (no token) with its client's name and its last accepted webhook
-- delivery (one index probe per location on ghl_webhook_events_location_received_idx, newest first).
CREATE OR REPLACE FUNCTION public.list_ghl_integrations()
RETURNS TABLE (location_id text, name text, location_name text, integration_type text, client_id uuid,
               client_name text, is_active boolean, time_zone text, custom_field_mapping jsonb,
               token_checked_at timestamptz, last_webhook_at timestamptz, created_at timestamptz,
               updated_at timestamptz)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT i.location_id, i.name, i.location_name, i.integration_type, i.client_id, c.name,
         coalesce(i.is_active, false), i.time_zone, i.custom_field_mapping, i.token_checked_at,
         (SELECT e.received_at FROM ghl_webhook_events e
            WHERE e.location_id = i.location_id AND e.outcome IN ('inserted', 'updated', 'unchanged')
            ORDER BY e.received_at DESC LIMIT 1),
         i.created_at, i.updated_at
  FROM ghl_integrations i
  LEFT JOIN clients c ON c.id = i.client_id
  ORDER BY i.location_id
$$;

-- The integrations (other than p_except) already holding this token: a token GHL refused for one location is
-- most often another location's, pasted by mistake; naming it tells the operator which one.
CREATE OR REPLACE FUNCTION public.ghl_integrations_with_token(p_api_token text, p_except text DEFAULT NULL)
RETURNS TABLE (location_id text, name text)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT i.location_id, coalesce(i.location_name, i.name) FROM ghl_integrations i
  WHERE i.api_token = p_api_token AND i.location_id IS DISTINCT FROM p_except
  ORDER BY i.location_id
$$;

REVOKE EXECUTE ON FUNCTION
  public.upsert_ghl_integration(text, text, text, text, uuid, text, text, jsonb, timestamptz),
  public.update_ghl_integration(text, boolean, text, text, text, timestamptz, jsonb),
  public.list_ghl_integrations(), public.ghl_integrations_with_token(text, text)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.upsert_ghl_integration(text, text, text, text, uuid, text, text, jsonb, timestamptz),
  public.update_ghl_integration(text, boolean, text, text, text, timestamptz, jsonb),
  public.list_ghl_integrations(), public.ghl_integrations_with_token(text, text)
  TO service_role;
