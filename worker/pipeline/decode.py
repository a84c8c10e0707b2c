"""Decode stage: page bytes -> HTML text, the same way for fetched responses and local files.

Bytes that are valid UTF-8 (and not plain ASCII) are UTF-8; otherwise the charset is found as the fetcher
finds it (``ingest_core.fetch.decode_html``: BOM, then the declared charset, then ``<meta charset>``, then
detection). The result is checked: a page that decodes only
with many replacement characters is ``Skip("decode_error")``; one whose text is mostly control or
unassigned characters (random or binary bytes behind an HTML-looking start) is ``Skip("not_html")``.
"""

from __future__ import annotations

import codecs
import re

from ingest_core.errors import Skip
from ingest_core.fetch import decode_html as _decode_bytes
from ingest_core.fetch import looks_binary

MAX_REPLACEMENT_SHARE = 0.005
"""More U+FFFD replacement characters than this share of the text (and more than a few) is an encoding
we could not read: a stray bad byte or two is normal, one in two hundred characters is not."""

MAX_UNPRINTABLE_SHARE = 0.02
"""More control, private-use or unassigned-looking characters than this share of the text is not a page:
real HTML has next to none, random bytes decoded as a single-byte code page have ~12 %."""

MIN_BAD_CHARS = 8
"""Below this many bad characters a page is never refused, whatever its size."""

_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE)
# C0/C1 controls other than tab, LF, CR, FF; surrogates; private use; noncharacters
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufdd0-\ufdef\ufffe\uffff]"
)


def decode_html(raw: bytes, content_type: str | None = None) -> str:
    """HTML text of ``raw`` page bytes; ``content_type`` is the HTTP header value, if any.

    Raises ``Skip("not_html")`` for binary bytes, ``Skip("decode_error")`` when no encoding reads them.
    """
    if looks_binary(raw):
        raise Skip("not_html", "the bytes are binary (magic number or NUL bytes)")
    if not raw.startswith(_BOMS) and not raw.isascii():
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            # valid UTF-8 with non-ASCII bytes is UTF-8 whatever the page declares: legacy text is next to
            # never valid UTF-8, while pages re-saved as UTF-8 keep their old <meta charset> (gb2312...)
            check_text(text, "utf-8")
            return text
    match = _CHARSET.search(content_type or "")
    text, encoding = _decode_bytes(raw, match.group(1) if match else None)
    check_text(text, encoding)
    return text


def check_text(text: str, encoding: str = "") -> None:
    """Raise ``Skip`` when decoded page text is undecodable or mostly unprintable (see the module doc)."""
    if not text:
        return
    limit = len(text)
    bad = text.count("\ufffd")
    if bad >= MIN_BAD_CHARS and bad > MAX_REPLACEMENT_SHARE * limit:
        where = f" as {encoding}" if encoding else ""
        raise Skip("decode_error", f"{bad} of {limit} characters undecodable{where}")
    unprintable = len(_UNPRINTABLE.findall(text))
    if unprintable >= MIN_BAD_CHARS and unprintable > MAX_UNPRINTABLE_SHARE * limit:
        raise Skip("not_html", f"{unprintable} of {limit} characters are control or unassigned characters")
