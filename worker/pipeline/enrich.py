"""Enrich stage: fields computed from a record's cleaned text, URLs and metadata (no network, no HTML).

Sets ``language``/``language_score`` (py3langid), ``word_count``, ``reading_time_minutes``, ``lead``,
``domain``/``registered_domain`` (tldextract's bundled public suffix list), ``canonical_url``,
``published``/``modified`` as ISO 8601 with the page's time and offset (never after the fetch),
``content_hash`` and ``near_dup_signature`` (base64 of the 128-byte MinHash the dedupe stage compares).
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import tldextract
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from worker.pipeline import neardup
from worker.pipeline.dedupe import content_hash

WORDS_PER_MINUTE = 238
"""Silent reading speed of adults for non-fiction (Brysbaert 2019), words per minute."""

CHARS_PER_MINUTE = 500
"""Reading speed for scripts written without spaces (Japanese, Chinese, Thai), characters per minute."""

LEAD_MIN_WORDS = 8
"""The lead is the first paragraph with at least this many words (else the first paragraph)."""

LEAD_MAX_CHARS = 1000
"""A lead longer than this is cut at a word boundary."""

DATE_SLACK = timedelta(days=1)
"""A date-only value may read up to a day ahead of the fetch time (time zones) and still be kept."""

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_UNSPACED_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f]")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Enricher:
    """Adds the computed fields of the record schema to a record dict (see the module docstring)."""

    def __init__(self, *, language_sample_chars: int = 4000, min_language_score: float = 0.5) -> None:
        if language_sample_chars < 100:
            raise ValueError("language_sample_chars must be >= 100")
        self.language_sample_chars = language_sample_chars
        self.min_language_score = min_language_score

    def enrich(self, record: dict) -> dict:
        """Return ``record`` with the computed fields set (language None when the guess is weak)."""
        text = record.get("text") or ""
        record["word_count"] = word_count(text)
        record["reading_time_minutes"] = reading_time_minutes(text)
        record["lead"] = lead(text)
        lang, score = self.language(text)
        record["language"] = lang
        record["language_score"] = score
        page_url = record.get("final_url") or record.get("url") or ""
        host = _hostname(page_url)
        record["domain"] = host.removeprefix("www.")
        record["registered_domain"] = registered_domain(host)
        record["canonical_url"] = _http_url(record.get("canonical_url")) or page_url or None
        now = _parse_date(record.get("fetched_at")) or datetime.now(UTC)
        for key in ("published", "modified"):
            record[key] = iso_date(record.get(key), not_after=now)
        record["content_hash"] = content_hash(text)
        record["near_dup_signature"] = base64.b64encode(neardup.minhash(text)).decode("ascii")
        return record

    def warm_up(self) -> None:
        """Load the language model and the public suffix list now (~0.3 s) rather than in a first task."""
        _identifier()
        _tld_extract()("example.co.uk")

    def language(self, text: str) -> tuple[str | None, float | None]:
        """ISO 639-1 code and a 0..1 probability; code None when empty or the guess is weak."""
        sample = text[: self.language_sample_chars].strip()
        if not sample:
            return None, None
        lang, prob = _identifier().classify(sample)
        score = round(float(prob), 3)
        return (lang if score >= self.min_language_score else None), score


def word_count(text: str) -> int:
    """Words of spaced scripts plus characters of unspaced ones (CJK, Thai), the usual count for each."""
    unspaced = len(_UNSPACED_CHAR.findall(text))
    if not unspaced:
        return len(_WORD_RE.findall(text))
    return len(_WORD_RE.findall(_UNSPACED_CHAR.sub(" ", text))) + unspaced


def reading_time_minutes(text: str) -> int:
    """Whole minutes to read ``text`` (at least 1 when there is any), at ``WORDS_PER_MINUTE``."""
    unspaced = len(_UNSPACED_CHAR.findall(text))
    words = len(_WORD_RE.findall(_UNSPACED_CHAR.sub(" ", text) if unspaced else text))
    if not words and not unspaced:
        return 0
    return max(1, round(words / WORDS_PER_MINUTE + unspaced / CHARS_PER_MINUTE))


def lead(text: str) -> str | None:
    """The first paragraph that reads as prose (``LEAD_MIN_WORDS`` words), else the first one."""
    paragraphs = [p.strip() for p in text.splitlines() if p.strip()]
    if not paragraphs:
        return None
    first = next((p for p in paragraphs if word_count(p) >= LEAD_MIN_WORDS), paragraphs[0])
    if len(first) <= LEAD_MAX_CHARS:
        return first
    cut = first[:LEAD_MAX_CHARS]
    return (cut.rsplit(" ", 1)[0] if " " in cut[LEAD_MAX_CHARS // 2 :] else cut) + "…"


def registered_domain(host: str) -> str | None:
    """The domain under its public suffix (``bbc.co.uk`` for ``news.bbc.co.uk``); None for IPs, localhost."""
    if not host:
        return None
    return _tld_extract()(host).top_domain_under_public_suffix or None


def iso_date(value: Any, *, not_after: datetime) -> str | None:
    """``value`` (ISO 8601, RFC 2822 or a date) as ISO 8601, as precise as the page gave it.

    A date stays ``YYYY-MM-DD``; a time keeps its offset (``Z`` for UTC, ``+01:00``...), and a time
    given without an offset is written without one. None when unparseable or later than ``not_after``
    (a date-only value, or a time without an offset, gets ``DATE_SLACK``).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if _DATE_ONLY.match(value):
        try:
            day = datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            return None
        return value if day <= not_after + DATE_SLACK else None
    parsed = _parse_local(value)
    if parsed is None:
        day = _human_date(value, not_after)  # "June 12, 2018", "12. März 2019": a day, no time
        return (
            day if day and datetime.fromisoformat(day).replace(tzinfo=UTC) <= not_after + DATE_SLACK else None
        )
    if parsed.tzinfo is None:
        if parsed.replace(tzinfo=UTC) > not_after + DATE_SLACK:
            return None
        if ":" not in value and (parsed.hour, parsed.minute, parsed.second) == (0, 0, 0):
            return parsed.date().isoformat()  # "20190221" is a date, not midnight
        return parsed.isoformat(timespec="seconds")
    try:
        if parsed.astimezone(UTC) > not_after + timedelta(minutes=5):
            return None
    except (OverflowError, ValueError):
        return None
    return parsed.isoformat(timespec="seconds").replace("+00:00", "Z")


def _human_date(value: str, not_after: datetime) -> str | None:
    from htmldate.extractors import try_date_expr

    if len(value) > 80:
        return None
    try:
        return try_date_expr(value, "%Y-%m-%d", True, datetime(1995, 1, 1), not_after.replace(tzinfo=None))
    except (ValueError, TypeError, OverflowError):
        return None


def _parse_local(value: str) -> datetime | None:
    """``value`` as a datetime in its own offset (naive when it gives none)."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = _parse_local(value.strip())
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _hostname(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def _http_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")) and _hostname(value):
        return value
    return None


@cache
def _tld_extract() -> tldextract.TLDExtract:
    # the suffix list shipped in the wheel: no fetch from the network, no cache directory written
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@cache
def _identifier() -> LanguageIdentifier:
    # loading the model takes ~100 ms: once per process, never at import (forked workers share nothing)
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
