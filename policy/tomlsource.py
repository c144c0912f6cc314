"""Read a TOML file so that every problem can name its file, line and key.

tomllib gives values but no positions; this finds the line a dotted key was
written on by following the table headers, which is what an administrator
needs to fix the file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.\-"' ]+?)\s*=""")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file; str() is the one-line message the CLI prints."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class TomlFileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
        return part[1:-1]
    return part


def _split_key(key: str) -> list[str]:
    return [_unquote(p) for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', key)]


class TomlSource:
    """A parsed TOML file plus a map from dotted keys to the lines they are on."""

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        table: list[str] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(raw)
            if header:
                names = _split_key(header.group(2))
                if header.group(1) == "[[":
                    base = ".".join(names)
                    index = counters.get(base, -1) + 1
                    counters[base] = index
                    names = names[:-1] + [f"{names[-1]}[{index}]"]
                table = names
                self._lines.setdefault(".".join(table), number)
                continue
            key = _KEY.match(raw)
            if key:
                dotted = ".".join(table + _split_key(key.group(1)))
                self._lines.setdefault(dotted, number)

    @classmethod
    def load(cls, path: Path) -> TomlSource:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TomlFileError([Problem(str(path), None, "", "file not found")])
        except (OSError, UnicodeDecodeError) as exc:
            raise TomlFileError([Problem(str(path), None, "", f"cannot read: {exc}")])
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            line = int(match.group(1)) if match else None
            raise TomlFileError([Problem(str(path), line, "", f"not valid TOML: {exc}")])
        return cls(path, text, data)

    def line_of(self, dotted: str) -> int | None:
        """The line of a key, or of the nearest enclosing table that has one."""
        parts = dotted.split(".")
        while parts:
            line = self._lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None

    def problem(self, dotted: str, message: str) -> Problem:
        return Problem(str(self.path), self.line_of(dotted), dotted, message)
