"""The pure rules (a transcript as text with speaker labels, a recording's object key), and the S3 adapter's upload."""

from __future__ import annotations

import pytest

from shared.domain.enrichment import flatten_transcript, recording_extension, recording_key, speaker_label
from shared.domain.ghl_models import TranscriptSentence


def sentence(channel, start, text, index=None):
    return TranscriptSentence.from_api({"mediaChannel": channel, "startTime": start, "transcript": text,
                                        "sentenceIndex": index})


def test_sentences_become_lines_in_time_order_with_speakers():
    text = flatten_transcript([sentence(2, 1500, "Hi  there.\n"), sentence(1, 0, "Hello,"), sentence(3, 2000, "Me too"),
                               sentence(1, 1700, "   ")])
    assert text == "Agent: Hello,\nContact: Hi there.\nSpeaker 3: Me too"


def test_same_start_time_keeps_sentence_order_and_no_sentences_is_empty():
    assert flatten_transcript([sentence(2, 0, "b", 2), sentence(1, 0, "a", 1)]) == "Agent: a\nContact: b"
    assert flatten_transcript([]) == "" and flatten_transcript([sentence(1, 0, "")]) == ""
    assert speaker_label(None) == "Speaker"


@pytest.mark.parametrize("content_type, ext", [
    ("audio/x-wav", "wav"), ("audio/wav; charset=binary", "wav"), ("AUDIO/MPEG", "mp3"), ("audio/ogg", "ogg"),
    ("application/octet-stream", "bin"), (None, "bin"), ("", "bin"),
])
def test_extension_from_content_type(content_type, ext):
    assert recording_extension(content_type) == ext


def test_key_is_location_then_message_one_level_deep():
    assert recording_key("loc1", "msg_1", "audio/x-wav") == "loc1/msg_1.wav"
    assert recording_key("loc1", "a/../b", "audio/mpeg") == "loc1/a%2F..%2Fb.mp3"


def test_a_large_recording_goes_up_in_parts_and_arrives_whole(stack, monkeypatch):
    """Above the part size the upload is multipart (parts of part_size); the object is byte-for-byte the file."""
    import io
    import os as _os
    import uuid

    from shared.adapters.object_store import S3Bucket

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    bucket = S3Bucket(endpoint_url=stack["s3_endpoint_url"], bucket="call-recordings", region="us-east-1")
    data = _os.urandom(11 * 1024 * 1024)
    key = f"test-multipart/{uuid.uuid4().hex}.wav"
    bucket.upload(key, io.BytesIO(data), size=len(data), content_type="audio/x-wav", part_size=5 * 1024 * 1024)
    assert bucket.get_bytes(key) == data
    assert bucket.head(key)["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 1 MiB
    assert bucket.exists(key) and not bucket.exists(key + ".missing")
