"""ghl-bridge's domain package, shipped inside every function.

    domain/    pure code: models and normalisers (no I/O)
    services/  use cases; they take their ports (repositories, GHL client) as arguments
    adapters/  the only modules that do I/O: Supabase (PostgREST) repository, GHL API client, object storage
    config.py  one settings object read from the environment
    errors.py  the error tree (permanent vs transient) and its HTTP mapping
    http.py    request/response helpers shared by the function handlers
    logs.py    one JSON line per event, secrets never included
    bootstrap.py  the composition root: builds real dependencies once per warm instance
"""
