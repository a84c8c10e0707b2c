"""Dedupe stage: the same normalized text is stored once, fleet-wide.

The text is normalized (case, punctuation and white space folded) and hashed; the first URL id to register
a hash in shared state owns it, and every later document with that hash is a duplicate of the owner.
A re-delivered task finds itself the owner and is not its own duplicate.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


class ContentRegistry(Protocol):
    """Where fingerprints live: ``content_owner`` returns the first id that registered a hash."""

    def content_owner(self, content_hash: str, url_id: str) -> str: ...


def normalize_text(text: str) -> str:
    """Text reduced to lowercase words separated by single spaces (NFKC, punctuation dropped)."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_hash(text: str) -> str:
    """SHA-256 hex of the normalized text."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """``duplicate_of`` is the owner's id when this document is a duplicate, else None."""

    content_hash: str
    duplicate_of: str | None
    similarity: float | None = None


class Deduper:
    """Exact-duplicate detection on normalized text, with state shared through ``registry``."""

    def __init__(self, registry: ContentRegistry) -> None:
        self.registry = registry

    def check(self, url_id: str, text: str) -> DedupeResult:
        digest = content_hash(text)
        owner = self.registry.content_owner(digest, url_id)
        if owner == url_id:
            return DedupeResult(digest, None)
        return DedupeResult(digest, owner, 1.0)
