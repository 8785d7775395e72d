-- Each location's own names for its dispositions. GHL lets every agency name the choices of its Disposition
-- workflow ("Interested", "Booked!"); the portal needs the nine canonical dispositions. A location's
-- disposition_mapping maps its labels onto them; upsert_call applies it (then the built-in synonyms) inside the
-- one merge, so the webhook stays one round trip and the import of calls uses it too.
--
--   disposition_mapping  {"<label as the agency names it>": "<one of the nine canonical dispositions>", ...}
--                        labels compared by disposition_label_key: case, spaces and punctuation ignored
--   disposition_label    on sales_calls / calls: the label as sent (mapped or not); NULL on existing rows
--                        (the migration rewrites none)

-- The comparison key of a label: lowercase, without whitespace and punctuation ("Meeting booked!!" and
-- "meeting-booked" are one label). Keep in step with shared/domain/calls._disposition_key (a test compares them).
CREATE OR REPLACE FUNCTION public.disposition_label_key(label text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT nullif(regexp_replace(lower(label), '[[:space:]!-/:-@[-`{-~‘’“”–—]+', '', 'g'), '')
$$;

-- The built-in synonyms by key (shared/domain/calls._DISPOSITIONS_BY_KEY; a test compares them).
CREATE OR REPLACE FUNCTION public.builtin_disposition(label_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE label_key
    WHEN 'noanswer' THEN 'No Answer' WHEN 'na' THEN 'No Answer' WHEN 'missed' THEN 'No Answer'
    WHEN 'busy' THEN 'No Answer'
    WHEN 'voicemail' THEN 'Voicemail' WHEN 'vm' THEN 'Voicemail' WHEN 'leftvoicemail' THEN 'Voicemail'
    WHEN 'leftmessage' THEN 'Voicemail'
    WHEN 'gatekeeper' THEN 'Gatekeeper'
    WHEN 'incorrectnumber' THEN 'Incorrect Number' WHEN 'wrongnumber' THEN 'Incorrect Number'
    WHEN 'notinterested' THEN 'Not Interested'
    WHEN 'callbackrequested' THEN 'Callback Requested' WHEN 'callback' THEN 'Callback Requested'
    WHEN 'futurepotential' THEN 'Future Potential'
    WHEN 'meetingbooked' THEN 'Meeting Booked' WHEN 'meetingscheduled' THEN 'Meeting Booked'
    WHEN 'appointmentbooked' THEN 'Meeting Booked'
    WHEN 'donotcontact' THEN 'Do Not Contact' WHEN 'dnc' THEN 'Do Not Contact' WHEN 'donotcall' THEN 'Do Not Contact'
  END
$$;

-- A label -> its canonical disposition: the location's mapping first, then the built-in synonyms; NULL when
-- neither knows it (the caller then infers one). plpgsql: planned once per session, not per call.
CREATE OR REPLACE FUNCTION public.map_disposition_label(p_label text, p_mapping jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  v_key text := public.disposition_label_key(p_label);
  v_found text;
BEGIN
  IF v_key IS NULL THEN
    RETURN NULL;
  END IF;
  IF p_mapping IS NOT NULL AND p_mapping <> '{}'::jsonb THEN
    -- exact spelling first (cheap), then by key; two labels with one key: the first by name wins
    v_found := p_mapping ->> p_label;
    IF v_found IS NULL THEN
      SELECT m.value INTO v_found FROM jsonb_each_text(p_mapping) AS m
        WHERE public.disposition_label_key(m.key) = v_key ORDER BY m.key LIMIT 1;
    END IF;
    IF v_found IS NOT NULL THEN
      RETURN v_found;
    END IF;
  END IF;
  RETURN public.builtin_disposition(v_key);
END $$;

-- A mapping is an object of labels to canonical dispositions (anything else is refused when written).
CREATE OR REPLACE FUNCTION public.disposition_mapping_is_valid(p_mapping jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_typeof(p_mapping) = 'object'
     AND NOT EXISTS (
       SELECT 1 FROM jsonb_each(p_mapping) AS m
       WHERE jsonb_typeof(m.value) <> 'string'
          OR public.disposition_label_key(m.key) IS NULL
          OR m.value #>> '{}' NOT IN ('No Answer', 'Voicemail', 'Gatekeeper', 'Incorrect Number', 'Not Interested',
                                      'Callback Requested', 'Future Potential', 'Meeting Booked', 'Do Not Contact'))
$$;

ALTER TABLE public.ghl_integrations
  ADD COLUMN disposition_mapping jsonb NOT NULL DEFAULT '{}'::jsonb,
  ADD CONSTRAINT ghl_integrations_disposition_mapping_check
    CHECK (public.disposition_mapping_is_valid(disposition_mapping));

-- No default and no rewrite: existing calls keep NULL (their label, if any, is in raw_payload).
ALTER TABLE public.sales_calls ADD COLUMN disposition_label text;
ALTER TABLE public.calls ADD COLUMN disposition_label text;

REVOKE EXECUTE ON FUNCTION
  public.disposition_label_key(text), public.builtin_disposition(text), public.map_disposition_label(text, jsonb),
  public.disposition_mapping_is_valid(jsonb)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.disposition_label_key(text), public.builtin_disposition(text), public.map_disposition_label(text, jsonb),
  public.disposition_mapping_is_valid(jsonb)
  TO service_role;
