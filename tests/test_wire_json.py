"""Request bodies and answers as JSON: orjson where it can, the standard library where it refuses."""

from __future__ import annotations

import json

import pytest

from llmroute_magic._providers._wire_json import dumps, loads


def test_a_chat_body_is_compact_utf8_json():
    body = {"model": "m", "messages": [{"role": "user", "content": "Grüße, 世界"}], "max_tokens": 5}
    out = dumps(body)
    assert json.loads(out) == body
    assert b" " not in out.replace(b"Gr\xc3\xbc\xc3\x9fe, ", b"")  # compact separators
    assert "世界".encode() in out  # UTF-8 as is, not \u escapes


@pytest.mark.parametrize("body", [{"seed": 2**70}, {"logit_bias": {50256: -100}}, {"flags": {True: 1}}])
def test_what_orjson_refuses_is_encoded_as_the_standard_library_does(body):
    assert dumps(body) == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def test_an_object_neither_can_encode_raises_the_standard_type_error():
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"x": object()})


def test_nan_goes_as_null_not_as_invalid_json():
    assert json.loads(dumps({"temperature": float("nan")})) == {"temperature": None}


@pytest.mark.parametrize("raw", [b"\xff{}", b'{"a": 1', b"", b"{'a': 1}", '{"a": nan}'])
def test_what_is_not_json_raises_value_error(raw):
    with pytest.raises(ValueError):
        loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"logprob":-Infinity,"top":Infinity,"x":NaN}',  # Python servers' json.dumps writes these
        '{"logprob":-Infinity}',  # a stream event's data, as text
        b'\xef\xbb\xbf{"text":"hi"}',  # a UTF-8 byte-order mark
        '{"text":"hi"}'.encode("utf-16"),
        b'{"text":"\\ud83d"}',  # an escaped lone surrogate
    ],
)
def test_what_servers_send_is_read_as_the_standard_library_reads_it(raw):
    out = loads(raw)
    assert repr(out) == repr(json.loads(raw))  # repr: NaN != NaN


@pytest.mark.parametrize("number", [2**63, 123456789012345678901234567890, -(2**63) - 1, 2**64 + 1])
def test_integers_beyond_64_bits_stay_exact(number):
    body = f'{{"name":"transfer","input":{{"account":{number}}}}}'
    assert loads(body.encode())["input"]["account"] == number
    assert loads(body)["input"]["account"] == number
