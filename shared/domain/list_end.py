"""When a cursor-paged GHL list (contacts search, calls export) has ended, and whether it ended short.

GHL answers every page with `total`, the records that match the query. The list has ended when the records
read so far reach that total (even when the last page is full: no extra request for an empty page), or when
a page is short or carries no next cursor. A list that ends before its total lost records on GHL's side
(deleted mid-pull, or a lagging index): the pull records that as a warning on the batch instead of passing
silently. A total of 0 with records on the page is taken as "no total" (the short page decides).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListEnd:
    done: bool
    warning: str | None = None


def list_end(kind: str, *, received: int, limit: int, read: int, total: int | None, has_next: bool) -> ListEnd:
    """`received`: records on this page (before any filtering of ours); `read`: records read so far, this page
    included; `total`: GHL's total on this page; `has_next`: GHL gave a cursor to go on from."""
    known_total = total if total and total > 0 else None
    if known_total is not None and read >= known_total:
        return ListEnd(True)
    if received < limit or not has_next:
        if known_total is not None:
            return ListEnd(True, f"{kind}: GHL reported {known_total} records but the list ended after {read}")
        return ListEnd(True)
    return ListEnd(False)
