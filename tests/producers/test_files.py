"""File and stdin sources: one URL a line, streamed, bad lines handed on to be refused with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest_core.canonical import canonicalize
from ingest_core.errors import InvalidURL
from producers.sources import iter_file, iter_lines


def _reason(url: str) -> str:
    with pytest.raises(InvalidURL) as caught:
        canonicalize(url)
    return caught.value.reason


def test_blank_lines_and_comments_are_skipped(tmp_path: Path) -> None:
    """Only non-blank lines not starting with # are URLs; whitespace around them is stripped."""
    path = tmp_path / "urls.txt"
    path.write_text("# my list\n\nhttps://a.com/1\n   \n  https://a.com/2  \n# end\n")
    assert list(iter_file(str(path))) == ["https://a.com/1", "https://a.com/2"]


def test_crlf_files_read_like_lf_files(tmp_path: Path) -> None:
    """Windows line endings do not end up in URLs."""
    path = tmp_path / "urls.txt"
    path.write_bytes(b"https://a.com/1\r\nhttps://a.com/2\r\n")
    assert list(iter_file(str(path))) == ["https://a.com/1", "https://a.com/2"]


def test_non_utf8_line_is_refused_and_the_others_go_through(tmp_path: Path) -> None:
    """A latin-1 line becomes a not_utf8 rejection; its neighbours are read normally."""
    path = tmp_path / "urls.txt"
    path.write_bytes(b"https://a.com/1\nhttps://a.com/caf\xe9\nhttps://a.com/2\n")
    lines = list(iter_file(str(path)))
    assert lines[0] == "https://a.com/1" and lines[2] == "https://a.com/2"
    assert _reason(lines[1]) == "not_utf8"


def test_overlong_line_is_cut_and_refused_in_bounded_memory() -> None:
    """A 5 MB line with no newline is cut at max_line (refused as too long) and the next line still read."""
    stream = io.BytesIO(b"https://a.com/" + b"x" * 5_000_000 + b"\nhttps://a.com/ok\n")
    lines = list(iter_lines(stream, max_line=4096))
    assert [len(line) for line in lines] == [4096, len("https://a.com/ok")]
    assert _reason(lines[0]) == "url_too_long"


def test_binary_file_yields_only_refusable_lines(tmp_path: Path) -> None:
    """Random binary content never crashes the reader; every line it yields is refused with a reason."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50)
    reasons = {_reason(line) for line in iter_file(str(path))}
    assert reasons <= {"not_utf8", "control_character", "invalid_url"} and reasons


def test_stdin_is_read_with_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """`-` reads the URLs from standard input."""
    fake = io.TextIOWrapper(io.BytesIO(b"https://a.com/1\n# c\nhttps://a.com/2\n"))
    monkeypatch.setattr("sys.stdin", fake)
    assert list(iter_file("-")) == ["https://a.com/1", "https://a.com/2"]
