"""What a database's schema is, read from pg_catalog, as comparable text: one entry per object.

Used to prove that a database upgraded from an earlier release ends identical to a fresh one
(tests/integration/test_migration_upgrades.py). Every object the migrations make is covered: schemas,
tables and their columns (type, nullability, default, generated/identity), composite types, enums and
domains, sequences, constraints, indexes, triggers, functions (pg_get_functiondef), views, row level
security and policies, owners, grants (table, column, sequence, function, schema) and default privileges,
comments, extensions.

Attribute order is compared for composite types (a ROW(...) is cast to one by position), not for tables: a
column added by a later migration comes last in an upgraded table and only a table rebuild could move it,
while nothing here depends on a table's column order (no INSERT without a column list, no positional row of
a table; PostgREST and the SQL functions name their columns). Databases made at 88a4ede, where two
migrations landed out of version order, have the columns of sales_calls and calls in another order.
"""

from __future__ import annotations

import psycopg


_USER_NAMESPACE = """
  n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp_%'
  AND n.nspname NOT LIKE 'pg_toast_temp_%'
"""

# aclitem[] as sorted text: the same grants given in another order are the same grants.
_ACL = "(SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest({col}) AS a)"

_QUERIES: dict[str, str] = {
    "schema": f"""
        SELECT n.nspname, concat_ws(' ', 'owner', pg_get_userbyid(n.nspowner), 'acl', {_ACL.format(col='n.nspacl')},
                                    'comment', obj_description(n.oid, 'pg_namespace'))
        FROM pg_namespace n WHERE {_USER_NAMESPACE}
    """,
    "extension": """
        SELECT e.extname, concat_ws(' ', 'version', e.extversion, 'schema', n.nspname)
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    """,
    "relation": f"""
        SELECT format('%I.%I', n.nspname, c.relname),
               concat_ws(' ', 'kind', c.relkind, 'owner', pg_get_userbyid(c.relowner),
                         'rls', c.relrowsecurity, 'force_rls', c.relforcerowsecurity,
                         'persistence', c.relpersistence, 'options', array_to_string(c.reloptions, ','),
                         'acl', {_ACL.format(col='c.relacl')},
                         'comment', obj_description(c.oid, 'pg_class'))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NAMESPACE} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
    """,
    "column": f"""
        SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname),
               concat_ws(' ', 'position', CASE WHEN c.relkind = 'c' THEN
                                      row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) END,
                         format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull,
                         'default', pg_get_expr(ad.adbin, ad.adrelid), 'generated', nullif(a.attgenerated, ''),
                         'identity', nullif(a.attidentity, ''),
                         'collation',
                         CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END,
                         'acl', {_ACL.format(col='a.attacl')},
                         'comment', col_description(c.oid, a.attnum))
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE {_USER_NAMESPACE} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND a.attnum > 0
          AND NOT a.attisdropped
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
    """,
    "sequence": """
        SELECT format('%I.%I', n.nspname, c.relname),
               concat_ws(' ', format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                         s.seqcache, s.seqcycle)
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    """,
    "constraint": f"""
        SELECT format('%I.%s.%I', n.nspname, coalesce(c.relname, format_type(co.contypid, NULL)), co.conname),
               concat_ws(' ', pg_get_constraintdef(co.oid), 'deferrable', co.condeferrable,
                         'deferred', co.condeferred, 'validated', co.convalidated)
        FROM pg_constraint co
        JOIN pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_class c ON c.oid = co.conrelid
        WHERE {_USER_NAMESPACE}
    """,
    "index": f"""
        SELECT format('%I.%I', n.nspname, c.relname), pg_get_indexdef(c.oid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NAMESPACE}
    """,
    "trigger": f"""
        SELECT format('%I.%I.%I', n.nspname, c.relname, t.tgname),
               concat_ws(' ', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NAMESPACE} AND NOT t.tgisinternal
    """,
    "function": f"""
        SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
               concat_ws(E'\\n', CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid)
                                      ELSE 'aggregate ' || pg_get_function_result(p.oid) END,
                         'owner ' || pg_get_userbyid(p.proowner), 'acl ' || {_ACL.format(col='p.proacl')},
                         'comment ' || obj_description(p.oid, 'pg_proc'))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_USER_NAMESPACE}
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
    """,
    "view": f"""
        SELECT format('%I.%I', n.nspname, c.relname), pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_NAMESPACE} AND c.relkind IN ('v', 'm')
    """,
    "policy": """
        SELECT format('%I.%I.%I', schemaname, tablename, policyname),
               concat_ws(' ', permissive, 'roles', array_to_string(roles, ','), 'for', cmd,
                         'using', qual, 'check', with_check)
        FROM pg_policies
    """,
    "type": f"""
        SELECT format('%I.%I', n.nspname, t.typname),
               concat_ws(' ', 'kind', t.typtype, 'owner', pg_get_userbyid(t.typowner),
                         'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                         'not_null', CASE WHEN t.typtype = 'd' THEN t.typnotnull END,
                         'default', t.typdefault,
                         'labels', (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                    FROM pg_enum e WHERE e.enumtypid = t.oid),
                         'acl', {_ACL.format(col='t.typacl')})
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE {_USER_NAMESPACE} AND t.typtype IN ('d', 'e')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                          AND d.deptype = 'e')
    """,
    "default_privileges": f"""
        SELECT format('%s.%s.%s', pg_get_userbyid(d.defaclrole), coalesce(n.nspname, '*'), d.defaclobjtype),
               {_ACL.format(col='d.defaclacl')}
        FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
    """,
}


def snapshot(conn: psycopg.Connection) -> dict[str, str]:
    """Every object of the database's own schemas: '<kind> <qualified name>' -> its definition."""
    objects: dict[str, str] = {}
    for kind, query in _QUERIES.items():
        for name, definition in conn.execute(query):
            objects[f"{kind} {name}"] = definition or ""
    return objects


def snapshot_of(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return snapshot(conn)


def differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """One line per object that is missing, extra or defined differently in `actual`, named."""
    lines = []
    for key in sorted(expected.keys() | actual.keys()):
        if key not in actual:
            lines.append(f"missing: {key}")
        elif key not in expected:
            lines.append(f"extra: {key}")
        elif expected[key] != actual[key]:
            lines.append(f"differs: {key}")
    return lines
