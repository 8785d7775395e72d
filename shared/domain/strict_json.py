"""The one rule for what JSON may hold (pure): strict JSON that the database can store.

Two uses of the one rule: `loads_strict` for what a caller sends us (refused with a 400), `loads_storable` for
what GHL answers (cleaned: we cannot send it back, and a value the database refuses would fail its batch on
every retry).

Python's `json` accepts more than RFC 8259 and more than Postgres can keep. `loads_strict` refuses, each with a
BadRequest naming the problem:
  * NaN, Infinity, -Infinity (not JSON at all);
  * a number that overflows a double (1e400 would become inf);
  * an integer literal past Python's limit on digits (sys.get_int_max_str_digits(), 4,300 by default), which
    json.loads answers with a bare ValueError;
  * a lone surrogate (\\ud800 without its pair): not a character, no UTF-8 encoding, jsonb refuses it;
  * U+0000 (NUL) in any string, key or value: neither text nor jsonb can hold it (Postgres 22P05).
    Refused anywhere, not only in the fields we store: the event log keeps the whole payload as jsonb.

Cheap on normal bodies: the number hooks run per float and per constant only (ints use the C parser), and the
walk over strings runs only when the text holds an escape that can produce NUL or a surrogate (\\u0000,
\\uD800-\\uDFFF), which valid UTF-8 text cannot hold any other way (a raw control character inside a string is
already a JSON error).
"""

from __future__ import annotations

import json
import math
import re
import sys

from shared import errors

_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")


class UnstorableJson(errors.BadRequest):
    """Valid JSON that the database cannot hold (NUL, a lone surrogate). `value` is what it parsed to, so the
    event log can still name the call and location it was about."""

    def __init__(self, message: str, value):
        super().__init__(message)
        self.value = value


class _Refused(Exception):
    pass


def _refuse_constant(name: str):
    raise _Refused(f"body holds {name}, which is not valid JSON: send a number or null")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _Refused(f"body holds the number {literal[:40]}, which is too large (it does not fit a double)")
    return value


def _first_unstorable(value) -> tuple[str, str] | None:
    """(where, what) of the first string (key or value) holding NUL or a lone surrogate, else None."""
    pending = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else key
                if _UNSTORABLE_CHAR.search(key):
                    return f"a key in '{path or '(top level)'}'", _what(key)
                pending.append((child, where))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
        elif isinstance(item, str) and _UNSTORABLE_CHAR.search(item):
            return (f"field '{path}'" if path else "the body"), _what(item)
    return None


def _what(text: str) -> str:
    return "\\u0000 (NUL)" if "\x00" in text else "a lone surrogate (\\uD800-\\uDFFF without its pair)"


def _sanitised(where: str) -> str:
    # The message may name a key that itself holds the culprit: never echo it.
    return _UNSTORABLE_CHAR.sub("?", where)[:200]


# One decoder for every call (json.loads with hooks would build a new one each time, which costs more than the
# parsing of a typical body).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads_strict(text: str):
    """json.loads for bodies: JSONDecodeError/RecursionError as json.loads; BadRequest for the rule above."""
    try:
        value = _DECODER.decode(text)
    except _Refused as exc:
        raise errors.BadRequest(str(exc)) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int() of a literal past the interpreter's limit on digits
        raise errors.BadRequest(f"body holds an integer of more than {sys.get_int_max_str_digits()} digits, "
                                "which is more than can be read") from None
    if _SUSPECT_ESCAPE.search(text):
        found = _first_unstorable(value)
        if found:
            where, what = found
            raise UnstorableJson(f"{_sanitised(where)} holds {what}, which cannot be stored; remove it", value)
    return value



def storable_text(text: str) -> str:
    """text without what the database cannot hold in text or jsonb (NUL, lone surrogates)."""
    return _UNSTORABLE_CHAR.sub("", text)


def _storable(value):
    """value with NUL and lone surrogates removed from every string and key."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(key): _storable(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_storable(child) for child in value]
    return value


def _finite_or_none(literal: str) -> float | None:
    value = float(literal)
    return None if math.isinf(value) else value


_LENIENT_DECODER = json.JSONDecoder(parse_constant=lambda name: None, parse_float=_finite_or_none)


def loads_storable(text: str | bytes):
    """json.loads for an upstream answer (GHL), made storable by the same rule: NaN/Infinity and numbers that
    overflow become null, NUL and lone surrogates are removed from strings. Not JSON: ValueError, as json.loads.
    Cheap on normal answers: the cleaning walk runs only when the text holds a suspect escape."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    value = _LENIENT_DECODER.decode(text)
    return _storable(value) if _SUSPECT_ESCAPE.search(text) else value
