"""SMTP-in rules that need no socket: smuggling, addresses, header size, passwords."""

from __future__ import annotations

from gateway.smtp_in import (
    Users,
    has_bare_line_ending,
    hash_password,
    header_block_size,
    valid_address,
)


def test_crlf_only_data_is_clean():
    assert not has_bare_line_ending(b"Subject: x\r\n\r\nline\r\n")


def test_bare_lf_and_smuggling_sequences_are_detected():
    assert has_bare_line_ending(b"a\nb\r\n")
    assert has_bare_line_ending(b"body\r\n\n.\r\nMAIL FROM:<x@y>\r\n")
    assert has_bare_line_ending(b"body\r\n.\rRCPT\r\n")


def test_addresses():
    assert valid_address("anne@kommune.dk")
    assert valid_address("søren@æblegård.dk")
    assert valid_address('"odd local"@example.dk')
    assert valid_address("postmaster@[127.0.0.1]")
    for bad in ("", "no-at-sign", "a@b@c", "a b@example.dk", "a@-bad-.dk", "x@", "@x.dk", "a\x00@x.dk"):
        assert not valid_address(bad), bad


def test_header_block_size():
    assert header_block_size(b"A: 1\r\nB: 2\r\n\r\nbody") == len(b"A: 1\r\nB: 2\r\n")


def test_scrypt_users_file(tmp_path):
    path = tmp_path / "users"
    path.write_text(f"# relay users\nexchange:{hash_password(b'correct horse', n=2**10)}\n")
    users = Users.load(str(path))
    assert users.check("exchange", b"correct horse")
    assert not users.check("exchange", b"wrong")
    assert not users.check("nobody", b"correct horse")
