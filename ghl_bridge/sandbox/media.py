"""Call media in the sandbox: when a call's transcript and recording exist, and how large the audio is.

GHL transcribes a call minutes after it ends; until then the transcription endpoint answers an empty list
and the recording endpoint 422. Per location (admin API, PUT /_sandbox/locations/{id}/media):
  transcript_ready_after_requests  the first N transcription requests of a message answer [] (not ready yet)
  transcript_delay_seconds         ... and so does every request within N seconds of the call's arrival
  recording_ready_after_requests   the first N recording requests of a message answer 422
  recording_bytes                  every recording is served as a WAV of exactly this many bytes (generated
                                   from the message id, the same bytes every time; None: the stored audio)
Both answers stay valid against GHL's OpenAPI files (the pipeline validates them as any other).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from ghl_bridge.sandbox.state import SandboxRequestError


@dataclass
class MediaSettings:
    transcript_ready_after_requests: int = 0
    transcript_delay_seconds: float = 0.0
    recording_ready_after_requests: int = 0
    recording_bytes: int | None = None


@dataclass
class LocationMedia:
    settings: MediaSettings = field(default_factory=MediaSettings)
    requests: Counter = field(default_factory=Counter)  # (kind, message id) -> requests so far
    arrived: dict[str, float] = field(default_factory=dict)  # message id -> monotonic time it was added

    def configure(self, body: dict) -> dict:
        known = set(MediaSettings.__dataclass_fields__)
        unknown = sorted(set(body) - known)
        if unknown:
            raise SandboxRequestError(400, f"unknown media settings {unknown}; known: {sorted(known)}")
        values = {**asdict(self.settings), **body}
        if values["recording_bytes"] is not None and int(values["recording_bytes"]) < 44:
            raise SandboxRequestError(400, "recording_bytes must be at least 44 (a WAV header)")
        self.settings = MediaSettings(
            transcript_ready_after_requests=int(values["transcript_ready_after_requests"]),
            transcript_delay_seconds=float(values["transcript_delay_seconds"]),
            recording_ready_after_requests=int(values["recording_ready_after_requests"]),
            recording_bytes=None if values["recording_bytes"] is None else int(values["recording_bytes"]))
        return self.as_dict()

    def as_dict(self) -> dict:
        counts: Counter = Counter()
        for (kind, _), n in self.requests.items():
            counts[kind] += n
        return {**asdict(self.settings), "requests": dict(counts)}

    def transcript_ready(self, message_id: str) -> bool:
        self.requests[("transcription", message_id)] += 1
        if self.requests[("transcription", message_id)] <= self.settings.transcript_ready_after_requests:
            return False
        arrived = self.arrived.get(message_id)
        delay = self.settings.transcript_delay_seconds
        return not (delay and arrived is not None and time.monotonic() - arrived < delay)

    def recording_ready(self, message_id: str) -> bool:
        self.requests[("recording", message_id)] += 1
        return self.requests[("recording", message_id)] > self.settings.recording_ready_after_requests

    def audio(self, message_id: str, stored: bytes) -> bytes:
        size = self.settings.recording_bytes
        return stored if size is None else wav_of_size(size, message_id)


def wav_of_size(size: int, seed: str) -> bytes:
    """A WAV file of exactly `size` bytes whose samples are derived from `seed` (deterministic, not silent,
    so a truncated or mixed-up copy never compares equal)."""
    data_size = size - 44
    header = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    header += (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(128))  # 4 KiB
    samples = (block * (data_size // len(block) + 1))[:data_size]
    return header + b"data" + data_size.to_bytes(4, "little") + samples
