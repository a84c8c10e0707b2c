"""Enrich stage: language, word count, domain; fields computed from the cleaned text."""

from __future__ import annotations

import re
from functools import cache
from urllib.parse import urlsplit

from py3langid.langid import MODEL_FILE, LanguageIdentifier

_WORD_RE = re.compile(r"\w+", re.UNICODE)


class Enricher:
    """Adds ``language``, ``language_score``, ``word_count`` and ``domain`` to a record dict."""

    def __init__(self, *, language_sample_chars: int = 4000, min_language_score: float = 0.5) -> None:
        if language_sample_chars < 100:
            raise ValueError("language_sample_chars must be >= 100")
        self.language_sample_chars = language_sample_chars
        self.min_language_score = min_language_score

    def enrich(self, record: dict) -> dict:
        """Return ``record`` with the computed fields set (language None when the guess is weak)."""
        text = record.get("text") or ""
        record["word_count"] = len(_WORD_RE.findall(text))
        lang, score = self.language(text)
        record["language"] = lang
        record["language_score"] = score
        host = urlsplit(record.get("final_url") or record.get("url") or "").hostname or ""
        record["domain"] = host.removeprefix("www.")
        return record

    def language(self, text: str) -> tuple[str | None, float | None]:
        """ISO 639-1 code and a 0..1 probability; code None when empty or the guess is weak."""
        sample = text[: self.language_sample_chars].strip()
        if not sample:
            return None, None
        lang, prob = _identifier().classify(sample)
        score = round(float(prob), 3)
        return (lang if score >= self.min_language_score else None), score


@cache
def _identifier() -> LanguageIdentifier:
    # loading the model takes ~100 ms: once per process, never at import (forked workers share nothing)
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
