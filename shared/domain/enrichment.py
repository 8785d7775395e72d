"""Pure rules of call enrichment: a GHL transcript as readable text, a recording's object key.

Speakers: GHL records calls in two media channels. Channel 1 is the location's side (the user who placed or
took the call: "Agent"), channel 2 the other party ("Contact"); any other channel is "Speaker N". This is
our reading of GHL's dual-channel recordings (docs/ghl-client.md); it lives in SPEAKERS only.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

SPEAKERS = {1: "Agent", 2: "Contact"}

# Content types GHL (or a proxy) may send for call audio, and the extension the object gets.
AUDIO_EXTENSIONS = {"audio/x-wav": "wav", "audio/wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav",
                    "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/mp4": "m4a", "audio/x-m4a": "m4a",
                    "audio/ogg": "ogg", "audio/webm": "webm", "audio/aac": "aac", "audio/flac": "flac"}


def speaker_label(media_channel: int | None) -> str:
    if media_channel is None:
        return "Speaker"
    return SPEAKERS.get(media_channel, f"Speaker {media_channel}")


def _sort_key(sentence: Any) -> tuple:
    start = getattr(sentence, "start_time", None)
    index = getattr(sentence, "sentence_index", None)
    return (start is None, start or 0, index is None, index or 0)


def flatten_transcript(sentences: Iterable[Any]) -> str:
    """One line per sentence in time order (then sentence index): 'Agent: Hello.' Empty sentences are
    dropped; an empty result means GHL has no transcript yet."""
    lines = []
    for sentence in sorted(sentences, key=_sort_key):
        text = " ".join((getattr(sentence, "transcript", "") or "").split())
        if text:
            lines.append(f"{speaker_label(getattr(sentence, 'media_channel', None))}: {text}")
    return "\n".join(lines)


def recording_extension(content_type: str | None) -> str:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base in AUDIO_EXTENSIONS:
        return AUDIO_EXTENSIONS[base]
    guessed = mimetypes.guess_extension(base) if base else None
    return guessed.lstrip(".") if guessed else "bin"


def recording_key(location_id: str, message_id: str, content_type: str | None) -> str:
    """<location_id>/<message id>.<ext from content type>; ids are escaped so a key is always one level deep."""
    return f"{quote(location_id, safe='')}/{quote(message_id, safe='')}.{recording_extension(content_type)}"
