"""Phone numbers to E.164, the match key shared with the database.

`normalize_phone` must agree with the SQL function `public.normalize_phone_e164` (first migration) on NANP
numbers, because a call's number (normalised here) is compared with a prospect's `phone_e164` (normalised by
the database). So the input is cleaned exactly as the SQL cleans it (an extension after an 'x' is dropped,
letters and punctuation are dropped, a leading '00' means '+'), and a +1 number must have the NANP shape the
SQL accepts ([2-9] then nine digits). `phonenumbers` then does the country-aware part: the default region for
numbers without a country code, and a length check per country (stricter than the SQL for non-NANP numbers,
which only ever means a missed match, never a wrong one).
"""

from __future__ import annotations

import functools
import re

import phonenumbers

_NON_DIGITS = re.compile(r"\D")
_NANP_NATIONAL = re.compile(r"^[2-9]\d{9}$")


def normalize_phone(raw: str | None, default_region: str = "US") -> str | None:
    """E.164 ('+15550102233') or None when `raw` cannot be read as a possible phone number."""
    if raw is None:
        return None
    text = str(raw).strip()
    return _normalize_text(text, (default_region or "US").upper()) if text else None


# The same few numbers come back all day (an agent's own line is the "from" of every call it makes), and
# phonenumbers' parsing is pure Python: once per number and region per instance (thread-safe, bounded).
@functools.lru_cache(maxsize=8192)
def _normalize_text(text: str, region: str) -> str | None:
    head = text.lower().split("x", 1)[0]  # "555-010-2233 x12" / "ext. 12": the extension is not matched
    digits = _NON_DIGITS.sub("", head)
    if not digits:
        return None
    if text.startswith("+"):
        candidate = "+" + digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    else:
        candidate = digits
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    if number.country_code == 1 and not _NANP_NATIONAL.match(str(number.national_number)):
        return None
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if candidate.startswith("+") and formatted != candidate:
        return None  # e.g. "+62 0579..." (a trunk 0 after the country code): not silently rewritten
    return formatted if 9 <= len(formatted) <= 16 else None
