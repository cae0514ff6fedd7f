"""Properties of the multipart parsers: wire/multipart.py (model rewrite) and the recorder's
model/stream extraction (recorder/capture.py ``_multipart_field`` via ``build_row``).

Bodies are generated per RFC 7578 / RFC 2046 with odd but legal boundaries (1-70 characters from
the RFC's set, including the regex-special ``( ) + . ? = :`` and spaces, quoted or not, long, or
starting with dashes), parts in any order, file bytes holding CRLFs and ``--boundary`` that is not
at a line start, and ``Content-Disposition`` header variants.

* field_value finds each text field; replace_field changes only the value bytes of the field and
  a second replace with the old value gives the original bytes back (round trip);
* the recorder reads the same model and stream flag as the replayer;
* no input (any bytes, any content type) makes either raise.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parity.recorder.capture import Capture, build_row
from parity.wire.multipart import boundary_of, field_value, replace_field

BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
TSPECIALS = set('()<>@,;:\\"/[]?= ')

boundaries = st.one_of(
    st.text(alphabet=BCHARS, min_size=1, max_size=70).map(str.rstrip).filter(bool),  # no trailing space
    st.sampled_from(
        [
            "x",
            "----WebKitFormBoundary7MA4YWxkTrZu0gW",
            "--",
            "a+b(c)?.d",
            "===",
            "formdata-undici-0123456789",
            "-" * 70,
            "q" * 70,
        ]
    ),
)
value_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1, max_size=30
)


NAMES = ["model", "stream", "language", "prompt", "response_format", "temperature"]
_CTS = st.sampled_from(
    [
        "multipart/form-data; boundary={}",
        "multipart/form-data;boundary={}",
        "multipart/form-data; charset=utf-8; Boundary={}",
        "multipart/form-data; boundary={}; charset=utf-8",
    ]
)
_FIELDS = st.lists(st.sampled_from(NAMES), unique=True, max_size=5)
_STREAM = st.sampled_from(["true", "false"])
_FILE_PIECES = st.lists(
    st.sampled_from([b"\r\n", b"\x00\xff", b"RIFF", b"<delim>", b"--", b"\r\n\r\n", b" "])
    | st.binary(max_size=8),
    max_size=10,
)
_DISP = st.sampled_from(
    [
        'Content-Disposition: form-data; name="{n}"',
        'content-disposition: form-data; name="{n}"',
        'Content-Disposition: form-data;name="{n}"',
    ]
)
_PREAMBLE = st.sampled_from([b"", b"preamble\r\n"])
_EPILOGUE = st.sampled_from([b"\r\n", b"", b"\r\nepilogue"])
FILE_HEAD = b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n'


@st.composite
def multipart_bodies(draw, with_model: bool = True):
    """(raw body, content type, {text field: value}, (start, end) of the model value)."""
    boundary = draw(boundaries)
    quoted = draw(st.booleans()) or bool(set(boundary) & TSPECIALS)
    ct = draw(_CTS).format(f'"{boundary}"' if quoted else boundary)
    delim = b"--" + boundary.encode()
    fields: dict[str, str] = {}
    parts: list[tuple[str, bytes]] = []
    for name in draw(_FIELDS):
        if name == "model" and not with_model:
            continue
        value = draw(_STREAM) if name == "stream" else draw(value_text)
        fields[name] = value
        parts.append((name, value.encode()))
    if with_model and "model" not in fields:
        fields["model"] = draw(value_text)
        parts.insert(draw(st.integers(0, len(parts))), ("model", fields["model"].encode()))
    # the file: any bytes, CRLFs, and the boundary string where it is legal (not after a CRLF)
    file_bytes = b"".join(b"x" + delim if p == b"<delim>" else p for p in draw(_FILE_PIECES))
    while b"\r\n" + delim in b"\r\n" + file_bytes or file_bytes.endswith(b"\r"):
        file_bytes = file_bytes.replace(b"\r\n" + delim, b"\r\nX").removesuffix(b"\r")
        if file_bytes.startswith(delim):
            file_bytes = b"X" + file_bytes
    disp = draw(_DISP)
    body_parts = [(n, disp.format(n=n).encode() + b"\r\n", v) for n, v in parts]
    body_parts.insert(draw(st.integers(0, len(parts))), ("file", FILE_HEAD, file_bytes))
    out = draw(_PREAMBLE)
    span = None
    for name, head, value in body_parts:
        out += delim + b"\r\n" + head + b"\r\n"
        if name == "model":
            span = (len(out), len(out) + len(value))
        out += value + b"\r\n"
    out += delim + b"--" + draw(_EPILOGUE)
    return out, ct, fields, span


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=multipart_bodies(), new=value_text)
@example(
    case=(
        b'--a+b(c)?.d\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--a+b(c)?.d--\r\n',
        'multipart/form-data; boundary="a+b(c)?.d"',
        {"model": "whisper-1"},
        (61, 70),
    ),
    new="gpt-4o-transcribe",
)
def test_replace_changes_only_the_value_and_round_trips(prop_count, case, new: str) -> None:
    prop_count()
    raw, ct, fields, (start, end) = case
    assert raw[start:end] == fields["model"].encode()
    assert boundary_of(ct) is not None
    for name, value in fields.items():
        assert field_value(raw, ct, name) == value
    out, old = replace_field(raw, ct, "model", new)
    assert old == fields["model"]
    assert out == raw[:start] + new.encode() + raw[end:]  # every other byte unchanged
    assert field_value(out, ct, "model") == new
    for name, value in fields.items():
        if name != "model":
            assert field_value(out, ct, name) == value
    back, was = replace_field(out, ct, "model", fields["model"])
    assert (back, was) == (raw, new)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=multipart_bodies(with_model=False))
def test_no_model_field_means_no_change(prop_count, case) -> None:
    prop_count()
    raw, ct, _, _ = case
    assert field_value(raw, ct, "model") is None
    assert replace_field(raw, ct, "model", "x") == (raw, None)


def _row(raw: bytes, ct: str) -> dict:
    return build_row(
        Capture(
            wall_start=0.0,
            t_start=0.0,
            method="POST",
            path="/v1/audio/transcriptions",
            host="h",
            request_headers={"content-type": ct},
            request_raw=raw,
            status=200,
            response_headers={"content-type": "application/json"},
            body=b'{"text": "hi"}',
        )
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=multipart_bodies())
def test_recorder_reads_the_same_model_and_stream_as_the_replayer(prop_count, case) -> None:
    prop_count()
    raw, ct, fields, _ = case
    row = _row(raw, ct)
    assert row["request_raw"] == raw and row.get("request_body") is None
    assert row.get("model") == field_value(raw, ct, "model") == fields["model"]
    assert row["stream"] == (fields.get("stream") == "true")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=multipart_bodies(), media=st.sampled_from(["Multipart/Form-Data", "MULTIPART/FORM-DATA"]))
@example(
    case=(
        b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
        {"model": "whisper-1"},
        (53, 62),
    ),
    media="Multipart/Form-Data",
)
def test_media_type_case_does_not_matter(prop_count, case, media: str) -> None:
    """Found by this suite, fixed since: recorder/capture.py tested '"multipart/" in content-type'
    case-sensitively, so 'Multipart/Form-Data' uploads had no model or stream in their row."""
    prop_count()
    raw, ct, fields, _ = case
    ct = media + ct[len("multipart/form-data") :]
    assert field_value(raw, ct, "model") == fields["model"]  # the replayer already reads it
    assert _row(raw, ct).get("model") == fields["model"]


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200), ct=st.text(max_size=60), name=st.sampled_from(["model", "stream", ""]))
@example(raw=b"--\xe2\x82\xac\r\n", ct="multipart/form-data; boundary=\u20ac", name="model")
def test_arbitrary_bodies_never_raise(prop_count, raw: bytes, ct: str, name: str) -> None:
    """Found by this suite, fixed since: a boundary above U+00FF raised UnicodeEncodeError
    (wire/multipart.py encoded it as latin-1)."""
    prop_count()
    field_value(raw, ct, name)
    out, old = replace_field(raw, ct, name, "m")
    assert old is None or isinstance(old, str)
    if old is None:
        assert out == raw


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=200),
    ct=st.text(alphabet=st.characters(max_codepoint=0xFF, blacklist_categories=("Cs",)), max_size=60).map(
        lambda t: "multipart/form-data; boundary=" + t
    ),
)
def test_arbitrary_latin1_content_types_never_raise(prop_count, raw: bytes, ct: str) -> None:
    """The part of the property that holds today: any bytes with any latin-1 content type."""
    prop_count()
    field_value(raw, ct, "model")
    replace_field(raw, ct, "model", "m")
    row = _row(raw, ct)
    assert row.get("request_raw") == (raw or None)


@settings(max_examples=50, deadline=None)
@given(case=multipart_bodies())
def test_missing_boundary_reads_nothing(prop_count, case) -> None:
    prop_count()
    raw, _, _, _ = case
    for ct in ("multipart/form-data", "multipart/form-data; boundary=", 'multipart/form-data; boundary=""'):
        assert field_value(raw, ct, "model") is None
        assert replace_field(raw, ct, "model", "x") == (raw, None)
        row = _row(raw, ct)
        assert row.get("model") is None and row["request_raw"] == raw
