"""Dedupe stage: each story is stored once, fleet-wide, whether copied exactly or nearly.

Exact: the text is normalized (case, punctuation and white space folded) and hashed. Near: a MinHash
signature of its word 5-grams (``worker.pipeline.neardup``) is looked up by LSH bands among the canonical
documents, and a candidate counts when the Jaccard computed from its stored bottom-k sketch of shingle
hashes (exact for texts up to ``neardup.SKETCH_K`` shingles) is >= ``threshold``.
Both checks and the registration of a new canonical document are one atomic step in shared state
(``ContentRegistry.dedupe``), so of two near-identical pages processed at the same moment exactly one is
canonical. A re-delivered task finds itself the owner and is not its own duplicate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from worker.pipeline import neardup
from worker.pipeline.neardup import normalize_text

__all__ = ["ContentRegistry", "DedupeResult", "Deduper", "content_hash", "normalize_text"]

DEFAULT_THRESHOLD = 0.8
"""Estimated Jaccard (word 5-grams) at or above which a document is a near-duplicate."""


class ContentRegistry(Protocol):
    """Shared fingerprints; ``dedupe`` looks up and registers in one atomic step.

    Returns ``(kind, owner, similarity)``: kind ``"new"`` (registered now, or already ours), ``"same_text"``
    (owner registered this hash) or ``"near_duplicate"`` (a band candidate whose bottom-``k`` sketch gives
    Jaccard >= ``threshold``). An empty ``bands`` list checks the exact hash only.
    """

    def dedupe(
        self, url_id: str, content_hash: str, sketch: bytes, bands: list[bytes], threshold: float, k: int
    ) -> tuple[str, str | None, float]: ...


def content_hash(text: str) -> str:
    """SHA-256 hex of the normalized text."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """``duplicate_of`` is the canonical id when this document is a duplicate (``reason`` says how)."""

    content_hash: str
    duplicate_of: str | None
    similarity: float | None = None
    reason: str = ""


class Deduper:
    """Exact and near-duplicate detection, with state shared through ``registry``.

    ``threshold`` is the estimated Jaccard on word 5-grams for a near-duplicate; 0 checks exact copies only.
    """

    def __init__(self, registry: ContentRegistry, *, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError("threshold must be between 0 and 1 (0: exact duplicates only)")
        self.registry = registry
        self.threshold = threshold

    def check(self, url_id: str, text: str, signature: bytes | None = None) -> DedupeResult:
        """Register ``text`` under ``url_id`` unless it duplicates a canonical document.

        ``signature`` is ``neardup.minhash(text)`` when the caller already has it.
        """
        digest = content_hash(text)
        near = self.threshold > 0
        sig = (signature or neardup.minhash(text)) if near else b""
        kind, owner, similarity = self.registry.dedupe(
            url_id,
            digest,
            neardup.sketch(text) if near else b"",
            neardup.bands(sig) if near else [],
            self.threshold,
            neardup.SKETCH_K,
        )
        if kind == "new" or owner is None or owner == url_id:
            return DedupeResult(digest, None)
        return DedupeResult(digest, owner, round(similarity, 3), kind)
