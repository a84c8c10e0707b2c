"""Decoding page bytes (``worker.pipeline.decode``): the same charset rules for files as for responses."""

import gzip
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingest_core.errors import Skip
from worker.pipeline.decode import check_text, decode_html

REPO = Path(__file__).resolve().parents[3]
GERMAN = "<p>Die Prüfung der Brücke über die Straße ergab große Schäden; geprüft wurde im März.</p>"
CHINESE = "<p>市政府周二批准了新的渡轮计划，夜间航班将在春季开始运行，帮助岛上居民通勤。</p>"


def _page(body: str, meta: str = "") -> str:
    head = f"<!doctype html><html><head>{meta}<title>t</title></head>"
    return f"{head}<body><article>{body}</article></body></html>"


def test_latin1_page_with_meta_charset_decodes_to_its_umlauts():
    """A windows-1252 page that says so in <meta charset> decodes to real umlauts, no replacement marks."""
    raw = _page(GERMAN * 5, '<meta charset="iso-8859-1">').encode("cp1252")
    text = decode_html(raw)
    assert "Prüfung der Brücke über die Straße" in text
    assert "\ufffd" not in text


def test_latin1_page_without_any_declaration_is_detected():
    """Without a BOM or a declared charset, detection still finds a Latin code page for German text."""
    raw = _page(GERMAN * 20).encode("cp1252")
    assert "Schäden; geprüft" in decode_html(raw)


def test_gbk_page_declared_in_meta_decodes_to_chinese():
    """A GBK page (meta charset=gbk) decodes to its Chinese text."""
    meta = '<meta http-equiv="Content-Type" content="text/html; charset=gbk">'
    raw = _page(CHINESE * 5, meta).encode("gbk")
    assert "市政府周二批准了新的渡轮计划" in decode_html(raw)


def test_bom_wins_over_a_wrong_declaration():
    """A UTF-8 BOM is believed over a <meta> that says windows-1252, as browsers do."""
    raw = b"\xef\xbb\xbf" + _page(GERMAN, '<meta charset="windows-1252">').encode("utf-8")
    assert "Prüfung" in decode_html(raw)


def test_valid_utf8_wins_over_a_stale_legacy_declaration():
    """A page re-saved as UTF-8 that still says gb2312 in <meta> decodes as UTF-8, not as mojibake."""
    raw = _page(CHINESE * 3, '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">').encode()
    assert "市政府周二批准了新的渡轮计划" in decode_html(raw)


def test_http_charset_is_used_when_given():
    """The charset of a Content-Type header decodes a page that declares nothing itself."""
    raw = _page(CHINESE * 3).encode("gbk")
    assert "渡轮计划" in decode_html(raw, "text/html; charset=GBK")


def test_random_bytes_behind_an_html_start_are_not_html():
    """Random bytes after an HTML-looking first kilobyte end Skip("not_html"), never a record."""
    rng = random.Random(7)
    head = _page("<p>" + "word " * 180 + "</p>")[:1024].encode()
    raw = head + bytes(rng.randrange(1, 256) for _ in range(40_000))  # no NUL: the binary sniff passes
    with pytest.raises(Skip) as exc:
        decode_html(raw)
    assert exc.value.reason in ("not_html", "decode_error")


def test_binary_magic_is_not_html():
    """A PNG is refused as not_html before any decoding."""
    with pytest.raises(Skip) as exc:
        decode_html(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert exc.value.reason == "not_html"


def test_many_replacement_characters_are_a_decode_error_but_a_few_are_not():
    """Text with 1 % replacement characters is decode_error; two stray ones in a page are fine."""
    with pytest.raises(Skip) as exc:
        check_text("abcdefghi\ufffd" * 500)
    assert exc.value.reason == "decode_error"
    check_text(_page(GERMAN * 20) + "\ufffd\ufffd")


def test_ingest_extract_reads_latin1_and_gbk_files(tmp_path):
    """`ingest extract` decodes a Latin-1 .html and a GBK .html.gz file like the fetcher does."""
    latin = tmp_path / "latin.html"
    latin.write_bytes(_page(GERMAN * 6, '<meta charset="latin1">').encode("latin-1"))
    gbk = tmp_path / "gbk.html.gz"
    gbk.write_bytes(gzip.compress(_page(CHINESE * 8, '<meta charset="gb2312">').encode("gbk")))
    noise = tmp_path / "noise.html"
    rng = random.Random(3)
    noise.write_bytes(_page("<p>x</p>").encode() + bytes(rng.randrange(1, 256) for _ in range(20_000)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "extract", str(latin), str(gbk), str(noise)],
        capture_output=True, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    records = {Path(r["file"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert "Prüfung der Brücke über die Straße" in records["latin.html"]["text"]
    assert "\ufffd" not in records["latin.html"]["text"]
    assert "市政府周二批准了新的渡轮计划" in records["gbk.html.gz"]["text"]
    assert "noise.html" not in records  # no record from random bytes: reported on stderr, exit 1
    assert re.search(r"skipped:(not_html|decode_error) \S*noise\.html", proc.stderr), proc.stderr
    assert proc.returncode == 1
