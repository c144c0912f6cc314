"""The LDAP filter: a recipient address can never change the filter's structure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ldap3.utils.conv import escape_filter_chars

from certdir.ldapsource import search_filter

META = "*()\\\x00"


@pytest.mark.parametrize(("address", "expected"), [
    ("person@borger.test", "(mail=person@borger.test)"),
    ("*@kommune.test", "(mail=\\2a@kommune.test)"),
    ("x)(mail=*)(x@kommune.test", "(mail=x\\29\\28mail=\\2a\\29\\28x@kommune.test)"),
    ("a\x00b@kommune.test", "(mail=a\\00b@kommune.test)"),
    ("back\\slash@kommune.test", "(mail=back\\5cslash@kommune.test)"),
])
def test_filter_metacharacters_are_escaped_per_rfc4515(address: str, expected: str) -> None:
    assert search_filter("(mail={address})", address) == expected


def test_template_with_several_placeholders_escapes_each() -> None:
    assert search_filter("(|(mail={address})(otherMailbox={address}))", "*") == \
        "(|(mail=\\2a)(otherMailbox=\\2a))"


@given(st.text(alphabet=st.sampled_from(list("ab@.-_" + META + "ø{}")), max_size=40))
def test_escaped_value_holds_no_raw_metacharacters(address: str) -> None:
    built = search_filter("(mail={address})", address)
    inner = built[len("(mail="):-1]
    assert not any(c in inner for c in "*()\x00")
    # Every backslash starts a two-hex-digit escape (RFC 4515 section 3).
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            assert all(c in "0123456789abcdef" for c in inner[i + 1:i + 3]) and len(inner[i + 1:i + 3]) == 2
            i += 3
        else:
            i += 1
    assert inner == escape_filter_chars(address)
