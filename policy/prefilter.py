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
_DIGITS = bytes(0x30 if 0x30 <= code <= 0x39 else 0x20 for code in range(256))


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


def digit_windows(data: bytes, run: int, pad: int) -> list[tuple[int, int]]:
    """Merged spans of `pad` characters around every run of >= `run` ASCII digits."""
    digits = data.translate(_DIGITS)
    needle = b"0" * run
    size = len(digits)
    windows: list[tuple[int, int]] = []
    index = digits.find(needle)
    while index != -1:
        end = index + run
        while end < size and digits[end] == 0x30:
            end += 1
        start, stop = max(0, index - pad), min(size, end + pad)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], stop)
        else:
            windows.append((start, stop))
        index = digits.find(needle, end)
    return windows
