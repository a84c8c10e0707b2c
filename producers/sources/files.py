"""URLs from the command line, from files and from stdin: one URL a line, streamed.

A file is read as bytes, line by line, so a 2 GB file costs one line of memory. A line that is not UTF-8
is handed on with its bad bytes as lone surrogates (``surrogateescape``), and canonicalization refuses it as
``not_utf8``; a line longer than ``max_line`` is cut (canonicalization refuses it as ``url_too_long``) and
the rest of it skipped. Either way the other lines still go through.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import BinaryIO

MAX_LINE = 16 * 1024
"""Longest line handed on whole; longer lines are cut here (longer than any accepted URL anyway)."""


def iter_lines(stream: BinaryIO, *, max_line: int = MAX_LINE) -> Iterator[str]:
    """Non-blank, non-comment lines of a binary stream, stripped; bad bytes kept as surrogates."""
    while True:
        line = stream.readline(max_line + 1)
        if not line:
            return
        if len(line) > max_line and not line.endswith(b"\n"):
            # Skip the rest of an overlong line in bounded reads (a file with no newline at all included).
            while (rest := stream.readline(max_line)) and not rest.endswith(b"\n"):
                pass
            line = line[:max_line]
        text = line.decode("utf-8", errors="surrogateescape").strip()
        if text and not text.startswith("#"):
            yield text


def iter_file(path: str, *, max_line: int = MAX_LINE) -> Iterator[str]:
    """URLs of a file (``-`` is stdin), one a line; blank lines and ``#`` comments are ignored."""
    if path == "-":
        yield from iter_lines(sys.stdin.buffer, max_line=max_line)
        return
    with open(path, "rb") as stream:
        yield from iter_lines(stream, max_line=max_line)


def iter_files(paths: Iterable[str], *, max_line: int = MAX_LINE) -> Iterator[str]:
    """URLs of several files, in order."""
    for path in paths:
        yield from iter_file(path, max_line=max_line)
