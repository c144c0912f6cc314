"""Cheap whole-text passes that let the detectors look only where they can fire.

Regular expressions and per-match Python code are slow on tens of megabytes;
`bytes.translate` and `bytes.find` run in C at hundreds of MB/s. Encoding to
latin-1 with "replace" keeps one byte per character, so offsets found in the
bytes are offsets in the text.
"""

from __future__ import annotations


def _fold_table() -> bytes:
    table = bytearray(256)
    for code in range(256):
        ch = chr(code)
        lower = ch.lower()
        if (ch.isalnum() or ch == "-") and len(lower) == 1 and ord(lower) < 256:
            table[code] = ord(lower)
        else:
            table[code] = 0x20
    return bytes(table)


_FOLD = _fold_table()


_RUNS = bytes(0x30 if 0x30 <= code <= 0x39 else 0x2D if code in b" -" else 0x78
              for code in range(256))
_CAPITALS = bytes(0x30 if 0x30 <= code <= 0x39 else 0x41 if 0x41 <= code <= 0x5A else 0x78
                  for code in range(256))


def latin1(text: str) -> bytes:
    """One byte per character; characters beyond latin-1 become '?'."""
    return text.encode("latin-1", errors="replace")


def fold(text: str | bytes) -> str:
    """Lower-case words separated by single-byte spaces, padded with a space each side.

    Letters, digits and '-' are word characters; everything else (punctuation,
    line breaks, characters beyond latin-1) becomes a space, so " term " marks
    a whole word wherever it appears.
    """
    data = latin1(text) if isinstance(text, str) else text
    return " " + data.translate(_FOLD).decode("latin-1") + " "


def digit_runs(data: bytes) -> bytes:
    """One byte per character of `latin1(text)`: "S" where a run of ASCII digits starts,
    "0" for the other digits of the run, "-" for a space or "-", "x" for anything else.

    The numeric detectors search it for "S00000" or "S000": the regex engine
    finds a literal prefix in C, and starting only where a run starts,
    digit-dense text (invoices, logs, tables) costs Python code only where a
    candidate is, not at every digit.
    """
    runs = data.translate(_RUNS)
    if b"0000" not in runs:
        return b""  # no run of four digits: no numeric identifier to find
    runs = runs.replace(b"x0", b"xS").replace(b"-0", b"-S")
    return b"S" + runs[1:] if runs[:1] == b"0" else runs


def capitals(data: bytes) -> bytes:
    """One byte per character of `latin1(text)`: "0" an ASCII digit, "A" an ASCII capital,
    "x" anything else (where an IBAN can start: "AA00")."""
    return data.translate(_CAPITALS)
