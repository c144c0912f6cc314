"""RFC 5322 §2.1.1 line length in the header block, without a socket."""

from __future__ import annotations

from gateway.smtp_in import has_overlong_header_line


def test_header_lines_of_998_octets_are_fine_999_are_not():
    assert not has_overlong_header_line(b"X-A: " + b"a" * 993 + b"\r\n\r\nbody\r\n")
    assert has_overlong_header_line(b"X-A: " + b"a" * 994 + b"\r\n\r\nbody\r\n")


def test_only_the_header_block_is_looked_at():
    assert not has_overlong_header_line(b"Subject: x\r\n\r\n" + b"b" * 2000 + b"\r\n")
    folded = b"X-Long: " + b"\r\n ".join([b"c" * 900] * 5) + b"\r\n\r\nbody\r\n"
    assert not has_overlong_header_line(folded)  # folding (RFC 5322 §2.2.3) keeps lines short
