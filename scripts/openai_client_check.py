"""The server against a client nobody here wrote: OpenAI's own Python package.

Usage: openai_client_check.py URL EXPECTED_PCM TEXT
URL is a running `bark-wgpu serve` (API key "sesame") on the tiny fixture model; EXPECTED_PCM is
what `bark-wgpu say --stream` wrote for TEXT with the same options. Every request below must
give exactly those bytes (or the error it should); any difference exits non-zero.
"""

import base64
import json
import sys

import openai

url, expected_path, text = sys.argv[1:4]
expected = open(expected_path, "rb").read()
assert len(expected) > 0, "say --stream wrote nothing"

# Bark's own knobs ride along in the body, as the OpenAI client allows for extensions.
knobs = {"greedy": True, "max_semantic_tokens": 6, "min_eos_p": 0.0}
client = openai.OpenAI(base_url=f"{url}/v1", api_key="sesame", max_retries=0)


def speak(**kw):
    return client.audio.speech.create(model="tts-1", voice="alloy", input=text, extra_body=knobs, **kw)


pcm = speak(response_format="pcm").content
assert pcm == expected, f"pcm: {len(pcm)} bytes, say --stream gave {len(expected)}"

with client.audio.speech.with_streaming_response.create(
    model="tts-1", voice="alloy", input=text, response_format="pcm", extra_body=knobs
) as response:
    assert response.headers["content-type"] == "audio/pcm", response.headers
    streamed = b"".join(response.iter_bytes(chunk_size=4096))
assert streamed == expected, f"streamed pcm: {len(streamed)} bytes, want {len(expected)}"

# Server-sent events: base64 audio in speech.audio.delta events, then speech.audio.done.
with client.audio.speech.with_streaming_response.create(
    model="tts-1", voice="alloy", input=text, response_format="pcm", stream_format="sse", extra_body=knobs
) as response:
    events = [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]
assert events and events[-1]["type"] == "speech.audio.done", events[-1:]
sse = b"".join(base64.b64decode(e["audio"]) for e in events[:-1] if e["type"] == "speech.audio.delta")
assert sse == expected, f"sse audio: {len(sse)} bytes, want {len(expected)}"

wav = speak(response_format="wav").content
assert wav[:4] == b"RIFF" and wav[36:40] == b"data", wav[:44]
assert wav[44:] == expected, "the wav's samples differ from say --stream"

try:
    client.audio.speech.create(model="tts-1", voice="nobody", input=text, response_format="pcm")
    raise AssertionError("an unknown voice was accepted")
except openai.BadRequestError as e:
    assert "unknown voice" in str(e), e

try:
    speak(response_format="mp3")
    raise AssertionError("mp3 was accepted")
except openai.BadRequestError as e:
    assert "response_format" in str(e), e

stranger = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
try:
    stranger.audio.speech.create(model="tts-1", voice="alloy", input=text)
    raise AssertionError("a wrong API key was accepted")
except openai.AuthenticationError:
    pass

models = [m.id for m in client.models.list()]
assert models == ["bark-tiny"], models

print(f"openai {openai.__version__}: pcm, streamed pcm, server-sent events and wav equal say --stream ({len(expected)} bytes); "
      "400 and 401 raised as the client's own errors")
