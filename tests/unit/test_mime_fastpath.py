"""Reading a message from its bytes gives exactly what the stdlib parse gives.

`read_message` cuts the leaf bodies of single-part and well-formed multipart
messages out of the raw bytes and parses only the header sections with the
stdlib; `read_message_stdlib` parses the whole message with
`email.message_from_bytes`. Every field of the reading and the resulting
classification must be the same, on the corpus, on generated messages of
every encoding, line ending and boundary breakage, and on garbage.
"""

from __future__ import annotations

import base64
import quopri
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from policy import mime
from policy.classify import classify_message, classify_reading
from policy.mime import Reading, read_message, read_message_stdlib
from policy.policyfile import Policy, load_policy
from tests.corpus.build import build_message
from tests.corpus.messages import corpus

SHIPPED = Path(__file__).resolve().parents[2] / "policy.toml"
POLICY: Policy = load_policy(SHIPPED)
LIMITS = POLICY.limits


def fields(reading: Reading) -> tuple[object, ...]:
    return (reading.pieces, reading.unscannable, reading.parts, reading.text_size,
            reading.message.items(), reading.message.get_unixfrom())


def assert_same_as_stdlib(raw: bytes, policy: Policy = POLICY) -> None:
    fast = read_message(raw, policy.limits, policy.unscannable.attached_images)
    slow = read_message_stdlib(raw, policy.limits, policy.unscannable.attached_images)
    assert fields(fast) == fields(slow)
    assert classify_reading(fast, policy) == classify_reading(slow, policy)


def test_every_corpus_message_reads_the_same_as_with_the_stdlib_parser() -> None:
    messages = [build_message(case) for case in corpus()]
    for raw in messages:
        assert_same_as_stdlib(raw)
    # the comparison above covers the fast path: most of the corpus takes it
    assert sum(mime._fast_tree(raw) is not None for raw in messages) >= len(messages) * 3 // 4


def test_common_shapes_take_the_fast_path() -> None:
    text = "Kære Søren, cpr 070761-4285, diagnosen er depression.\n" * 40
    for cte, body in (("8bit", text.encode()),
                      ("quoted-printable", quopri.encodestring(text.encode())),
                      ("base64", base64.encodebytes(text.encode()))):
        leaf = (b"Content-Type: text/plain; charset=utf-8\n"
                b"Content-Transfer-Encoding: " + cte.encode() + b"\n\n" + body)
        mixed = (b'From: a@example.dk\nContent-Type: multipart/mixed; boundary="outer"\n\n'
                 b"preamble\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
                 b"--inner\n" + leaf + b"\n--inner\nContent-Type: text/html\n\n<p>hej</p>\n"
                 b"--inner--\n\n--outer\nContent-Type: application/pdf; name=a.pdf\n"
                 b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(b"%PDF-1.4 broken")
                 + b"--outer--\nepilogue\n")
        for nl in (b"\n", b"\r\n", b"\r"):
            for raw in (b"From: a@example.dk\nSubject: Sag\n" + leaf, mixed):
                raw = raw.replace(b"\n", nl)
                assert mime._fast_tree(raw) is not None
                assert_same_as_stdlib(raw)
                reading = read_message(raw, LIMITS)
                assert "070761" not in "".join(reading.unscannable)
                assert any("diagnosen er depression" in piece.text for piece in reading.pieces)


def test_unusual_shapes_go_to_the_stdlib_parser() -> None:
    multipart = b'Content-Type: multipart/mixed; boundary="q"\n\n'
    for raw in (b"Content-Type: message/rfc822\n\nSubject: inner\n\nhej\n",
                b"Content-Transfer-Encoding: x-uuencode\n\nhej\n",
                b"Subject: no empty line\nhej\n\nmore",
                multipart + b"--q\n\nhej\n",  # no close boundary
                multipart + b"--q\n--q\n\nhej\n--q--\n",  # boundary lines in a row
                multipart + b"--q--\n--q\n\nhej\n--q--\n",  # close boundary first
                multipart + b"--q\nContent-Type: message/rfc822\n\nSubject: x\n\nhej\n--q--\n"):
        assert mime._fast_tree(raw) is None
        assert_same_as_stdlib(raw)


def test_only_whole_boundary_lines_split_a_multipart() -> None:
    for nl in (b"\n", b"\r\n", b"\r"):
        raw = (b'Content-Type: multipart/mixed; boundary="q"\n\n--q\n\n'
               b"diagnosen--q\n--qx\n --q\n--q--x\n-q\ncpr 070761-4285\n--q \t\n"
               b"Content-Type: text/plain\n\nsidste del--q--\n--q--\n").replace(b"\n", nl)
        tree = mime._fast_tree(raw)
        assert tree is not None and len(tree.get_payload()) == 2
        assert_same_as_stdlib(raw)


def test_damaged_base64_is_reported_the_same_way() -> None:
    raw = (b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
           b"U3lnZW1lbGRpbmcgb2cgZGlhZ25vc2Vu*!\nZGVwcmVzc2lvbg\n")
    assert mime._fast_tree(raw) is not None
    assert_same_as_stdlib(raw)
    assert any("damaged base64" in r for r in read_message(raw, LIMITS).unscannable)


_NEWLINES = st.sampled_from([b"\n", b"\r\n", b"\r"])
_HEADERS = st.sampled_from([
    b"Subject: =?utf-8?q?Sygemelding_for_S=C3=B8ren?= [fortrolig]",
    b"Subject: Fakturaer og =?iso-8859-1?b?c/hu?=", b"Subject: r\xc3\xa5 utf-8 \xff",
    b"Sensitivity: Private", b"From: a@example.dk", b"To: b@example.dk",
    b"Content-Type: text/plain; charset=utf-8", b"Content-Type: text/plain; charset=iso-8859-1",
    b"Content-Type: text/plain; charset=x-klingon", b"Content-Type: text/html",
    b"Content-Type: application/octet-stream; name=\"070761-4285.txt\"",
    b"Content-Type: application/pdf", b"Content-Type: image/png", b"Content-Type: bogus",
    b"Content-Type: multipart/mixed; boundary=\"q\"", b"Content-Type: message/rfc822",
    b"Content-Disposition: attachment; filename*=utf-8''s%C3%B8ren.txt",
    b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Transfer-Encoding: 8bit", b"Content-Transfer-Encoding: Base64 ",
    b"Content-Transfer-Encoding: x-uuencode", b"Content-Transfer-Encoding: x-gzip",
    b"Content-ID: <logo>", b" folded continuation", b"\tfolded tab", b"From bounce@x Mon",
    b"no colon here", b"msip_labels: MSIP_Label_0e7fb6d2-36b6-4e0e-9e3d-0123456789ab_Enabled=true",
])
_BODY = st.sampled_from([
    b"Kaere Soeren, cpr-nr. 070761-4285 og diagnosen er depression.",
    "Sygemelding, straffeattest og gæld på 12.000 kr.".encode(), "Søren".encode("latin-1"),
    b"U3lnZW1lbGRpbmcgb2cgZGlhZ25vc2Vu", b"ZGVwcmVzc2lvbg", b"====", b"*!", b"=C3=B8", b"=",
    b"=\r\n", b"=4", b"%PDF-1.7", b"PK\x03\x04", b"<p>diagnose</p>", b"\x00\xff\xfe",
    b"--q", b"--q--", b"Content-Type: text/plain", b"", b" ", b"DK5000400440116243",
])


@st.composite
def single_part_messages(draw: st.DrawFn, well_formed: bool = False) -> bytes:
    nl = draw(_NEWLINES)
    headers = draw(st.lists(_HEADERS, max_size=8))
    body_pieces = _BODY
    if well_formed:  # so that most multiparts generated are read the fast way
        headers = [h for h in headers if b":" in h and not any(
            word in h for word in (b"multipart", b"message", b"uuencode"))]
        body_pieces = _BODY.filter(lambda piece: not piece.startswith(b"--"))
    lines = draw(st.lists(st.tuples(st.lists(body_pieces, max_size=4), _NEWLINES), max_size=12))
    body = b"".join(b"".join(parts) + end for parts, end in lines)
    separator = nl if well_formed else draw(st.sampled_from([nl, b"", nl + nl]))
    return b"".join(h + nl for h in headers) + separator + body


@settings(max_examples=400, deadline=None)
@given(single_part_messages())
def test_generated_messages_read_the_same_as_with_the_stdlib_parser(raw: bytes) -> None:
    assert_same_as_stdlib(raw)


_BOUNDARY_LINES = st.sampled_from([b"--q", b"--q--", b"--q \t", b"--q-- ", b"--qx", b"--q--x",
                                   b" --q", b"--r", b"--r--", b"--q--q"])


@st.composite
def multipart_messages(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Multiparts, nested ones too, with boundary lines that are right, wrong or missing."""
    nl = draw(_NEWLINES)
    boundary = b"q" if depth == 0 else b"r"
    head = b"Content-Type: multipart/" + draw(st.sampled_from([b"mixed", b"alternative"])) \
        + b'; boundary="' + boundary + b'"' + nl + b"".join(h + nl for h in draw(st.lists(_HEADERS, max_size=2)))
    parts = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 2, 3, 4]))):
        if depth == 0 and draw(st.integers(0, 4)) == 0:
            part = draw(multipart_messages(depth=1))
        else:
            part = draw(single_part_messages(well_formed=draw(st.integers(0, 9)) > 0))
        extra = draw(_BOUNDARY_LINES) + draw(_NEWLINES) if draw(st.integers(0, 9)) == 0 else b""
        parts.append(b"--" + boundary + draw(st.sampled_from([b"", b"  "])) + nl + extra + part + nl)
    close = draw(st.sampled_from([b"--" + boundary + b"--" + nl] * 4 + [b"--" + boundary + b"--", b""]))
    preamble = draw(st.sampled_from([b"", b"This is a multi-part message." + nl]))
    epilogue = draw(st.sampled_from([b"", b"epilogue" + nl, b"--q" + nl + b"after" + nl]))
    return head + nl + preamble + b"".join(parts) + close + epilogue


@settings(max_examples=400, deadline=None)
@given(multipart_messages())
def test_generated_multiparts_read_the_same_as_with_the_stdlib_parser(raw: bytes) -> None:
    assert_same_as_stdlib(raw)


_PIECES = [b"Content-Type: multipart/mixed; boundary=\"q\"\n", b"--q\n", b"--q--\n", b"--q--",
           b"Content-Transfer-Encoding: base64\n", b"Content-Type: application/zip\n",
           b"Content-Type: message/rfc822\n", b"Content-Type: text/html; charset=utf-16\n",
           b"\n", b"\r\n", b"\r", b"PK\x03\x04", b"%PDF-1.7\n", b"=?utf-8?b?w6bDuMOl?=",
           b"cpr 070761-4285\n", b"Subject: [fortrolig]\n", b"\xff\xfe\x00", b"====\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_mime_shaped_garbage_reads_the_same_as_with_the_stdlib_parser(pieces: list[bytes]) -> None:
    assert_same_as_stdlib(b"".join(pieces))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_read_the_same_as_with_the_stdlib_parser(raw: bytes) -> None:
    assert_same_as_stdlib(raw)


def test_a_large_plain_text_message_is_classified_the_same_both_ways() -> None:
    # several scan pieces (mime.PIECE_SIZE) and a CPR number near the end
    line = "Tak for din henvendelse om byggetilladelse til carport på Skovvej 12.\r\n"
    text = line * (3 * mime.PIECE_SIZE // len(line)) + "cpr-nr. 070761-4285\r\n"
    raw = ("Subject: Stor\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n" + text).encode()
    assert mime._fast_tree(raw) is not None
    assert_same_as_stdlib(raw)
    assert classify_message(raw, POLICY).level.value == "confidential"
