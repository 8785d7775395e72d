-- Backfill: the disposition label, and the disposition the location's mapping gives it, of calls stored
-- without them.
--
-- A database made before the disposition names (e25e84e, landed in 88a4ede) and upgraded got the
-- disposition_label columns but kept the old merge until 20261204000100: a Disposition hit's label was not
-- stored, and a label only the location's disposition_mapping knows did not become the chosen disposition
-- (the issue's example: ('Meeting Booked', 'chosen', 'Booked!') on a fresh database, (NULL, NULL, NULL) on an
-- upgraded one). Calls stored before the labels existed have none either. The label is not lost: every hit is
-- kept on the row as received (raw_payload -> 'hits', keyed '<source>:<md5>'; the webhook event log holds the
-- same bodies), so this gives such rows what the merge gives them today.
--
-- Touches only rows it can fix: disposition_label IS NULL (never set: the merge sets it from any hit that
-- carries a label) and exactly one distinct label among the row's webhook hits (two different labels: which
-- one the merge keeps depends on the order of the hits, which the row does not keep, so the row is left as
-- it is). The label is read where the webhook reads it (shared/domain/webhook_payload.py): the keys
-- `disposition` / `callDisposition` (case, '_' and '-' ignored) at the top level or under `customData`, a
-- non-blank string, trimmed, at most 200 characters (a label sent as a number is left alone). Then, as
-- upsert_call does: map_disposition_label(label, the active integration's mapping); a mapped label is the
-- chosen disposition, an unmapped one leaves the disposition as it is (the doctor lists it as unmapped).
-- Today's mapping is applied, as the doctor's unmapped-label check does.

CREATE FUNCTION pg_temp.hit_disposition_labels(p_hit jsonb) RETURNS SETOF text
LANGUAGE sql IMMUTABLE AS $$
  WITH layer AS (
    SELECT p_hit AS fields WHERE jsonb_typeof(p_hit) = 'object'
    UNION ALL
    SELECT top.value FROM jsonb_each(CASE WHEN jsonb_typeof(p_hit) = 'object' THEN p_hit END) AS top
    WHERE replace(replace(lower(top.key), '_', ''), '-', '') = 'customdata' AND jsonb_typeof(top.value) = 'object'
  )
  SELECT left(label, 200) FROM (
    SELECT nullif(regexp_replace(f.value #>> '{}', '^\s+|\s+$', '', 'g'), '') AS label
    FROM layer, jsonb_each(layer.fields) AS f
    WHERE replace(replace(lower(f.key), '_', ''), '-', '') IN ('disposition', 'calldisposition')
      AND jsonb_typeof(f.value) = 'string') found
  WHERE label IS NOT NULL
$$;

WITH labelled AS (
  SELECT c.id, min(l.label) AS label
  FROM sales_calls c, jsonb_each(c.raw_payload -> 'hits') AS h, pg_temp.hit_disposition_labels(h.value) AS l(label)
  WHERE c.disposition_label IS NULL AND jsonb_typeof(c.raw_payload -> 'hits') = 'object' AND h.key LIKE 'webhook:%'
  GROUP BY c.id HAVING count(DISTINCT l.label) = 1
), mapped AS (
  SELECT l.id, l.label,
         map_disposition_label(l.label, (SELECT i.disposition_mapping FROM ghl_integrations i
                                         WHERE i.location_id = c.ghl_location_id AND i.is_active IS TRUE))
           AS disposition
  FROM labelled l JOIN sales_calls c ON c.id = l.id
)
UPDATE sales_calls c
SET disposition_label = m.label,
    disposition = coalesce(m.disposition, c.disposition),
    disposition_source = CASE WHEN m.disposition IS NOT NULL THEN 'chosen' ELSE c.disposition_source END
FROM mapped m WHERE c.id = m.id;

WITH labelled AS (
  SELECT c.id, min(l.label) AS label
  FROM calls c, jsonb_each(c.raw_payload -> 'hits') AS h, pg_temp.hit_disposition_labels(h.value) AS l(label)
  WHERE c.disposition_label IS NULL AND jsonb_typeof(c.raw_payload -> 'hits') = 'object' AND h.key LIKE 'webhook:%'
  GROUP BY c.id HAVING count(DISTINCT l.label) = 1
), mapped AS (
  SELECT l.id, l.label,
         map_disposition_label(l.label, (SELECT i.disposition_mapping FROM ghl_integrations i
                                         WHERE i.location_id = c.ghl_location_id AND i.is_active IS TRUE))
           AS disposition
  FROM labelled l JOIN calls c ON c.id = l.id
)
UPDATE calls c
SET disposition_label = m.label,
    disposition = coalesce(m.disposition, c.disposition),
    disposition_source = CASE WHEN m.disposition IS NOT NULL THEN 'chosen' ELSE c.disposition_source END
FROM mapped m WHERE c.id = m.id;

DROP FUNCTION pg_temp.hit_disposition_labels(jsonb);
