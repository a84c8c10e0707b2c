"""Near-duplicate fingerprints: a b-bit MinHash of word 5-gram shingles, and its LSH bands.

A document's signature is its shingle count (4 bytes, big-endian) then ``NUM_PERM`` one-byte slots: slot
``i`` is the low byte of the minimum, over the document's shingles, of the ``i``-th hash function. Two
signatures agree on a slot with probability ``J + (1 - J) / 256`` for shingle-set Jaccard ``J``, so the
share of equal slots estimates ``J`` (``estimate_jaccard``). The counts bound it exactly:
``J <= min(|A|, |B|) / max(|A|, |B|)``, which rejects a text cut to 70 % of another however its slots
agree. These bytes are the record's ``near_dup_signature`` (base64): compact, for offline use.

Candidates are found by banding (LSH): the first ``BANDS * ROWS`` slots cut into ``BANDS`` bands of
``ROWS`` slots; two documents become candidates when any band is equal. With 24 bands of 5 rows a pair at
J = 0.8 is a candidate with probability 1 - (1 - 0.8^5)^24 > 0.9999, at J = 0.5 with 0.53, at J = 0.2
with 0.008; every candidate is then verified on the sketches, so banding only decides the work done.
Verification uses a larger ``sketch``: the ``SKETCH_K`` smallest 32-bit shingle hashes (bottom-k), exact
for texts of up to ``SKETCH_K`` shingles, which the Lua step of ``ingest_core.state`` keeps per canonical
document and merges with the incoming one (``sketch_jaccard`` here does the same in Python).

Everything is deterministic: fixed seeds, no process-global state, the same text gives the same bytes.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache

import numpy as np

NUM_PERM = 128
"""Hash functions (signature slots, one byte each)."""

HEADER = 4
"""Bytes before the slots: the number of distinct shingles, big-endian (capped at 2^32 - 1)."""

SHINGLE_WORDS = 5
"""Words per shingle (word n-grams of the normalized text)."""

BANDS = 24
"""LSH bands; each is one field in shared state per canonical document."""

ROWS = 5
"""Slots per band (BANDS * ROWS <= NUM_PERM)."""

SKETCH_K = 512
"""Shingle hashes kept for verification (bottom-k): exact Jaccard when both texts have fewer shingles."""

SLOT_COLLISION = 1 / 256
"""Chance that two one-byte slots agree although their minima differ."""

_CHUNK = 4096
"""Shingles hashed per step: bounds memory to NUM_PERM * _CHUNK * 8 bytes whatever the page size."""

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
# scripts written without spaces between words: each character counts as a word for shingling
_UNSPACED = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f])")
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SHINGLE_MULT = np.uint64(0x9E3779B97F4A7C15)


def normalize_text(text: str) -> str:
    """Text reduced to lowercase words separated by single spaces (NFKC, punctuation dropped)."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


@cache
def _seeds() -> np.ndarray:
    digest = b"".join(
        hashlib.blake2b(f"article-ingest neardup v1 seed {i}".encode(), digest_size=8).digest()
        for i in range(NUM_PERM)
    )
    return np.frombuffer(digest, dtype="<u8").reshape(NUM_PERM, 1).copy()


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place: a bijection on 64-bit ints that scatters every input bit."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def shingle_hashes(text: str, k: int = SHINGLE_WORDS) -> np.ndarray:
    """Distinct 64-bit hashes of the word ``k``-grams of the normalized text (one shingle if shorter)."""
    words = _UNSPACED.sub(r" \1 ", normalize_text(text)).split()
    if not words:
        return np.zeros(0, dtype=np.uint64)
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))
    word_hash = np.frombuffer(
        b"".join(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest() for w in vocab), dtype="<u8"
    )[ids]
    n = max(1, len(words) - k + 1)
    acc = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(min(k, len(words))):  # polynomial rolling combination, wrapping mod 2^64
            acc = acc * _SHINGLE_MULT + word_hash[j : j + n]
    return np.unique(acc)


def minhash(text: str) -> bytes:
    """The signature of ``text``: ``HEADER`` + ``NUM_PERM`` bytes (count 0 and zero slots without words)."""
    shingles = shingle_hashes(text)
    if shingles.size == 0:
        return bytes(HEADER + NUM_PERM)
    seeds = _seeds()
    mins = np.full(NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, shingles.size, _CHUNK):
            block = _mix(shingles[start : start + _CHUNK][None, :] ^ seeds)
            np.minimum(mins, block.min(axis=1), out=mins)
    count = min(int(shingles.size), 2**32 - 1).to_bytes(HEADER, "big")
    return count + (mins & np.uint64(0xFF)).astype(np.uint8).tobytes()


def sketch(text: str, k: int = SKETCH_K) -> bytes:
    """Bottom-k sketch for verification: shingle count (4 bytes), then the ``k`` smallest 32-bit shingle
    hashes, ascending, big-endian. Two sketches give Jaccard exactly when both texts have at most ``k``
    shingles, else with a standard error of about sqrt(J (1 - J) / k)."""
    shingles = shingle_hashes(text)
    count = min(int(shingles.size), 2**32 - 1).to_bytes(HEADER, "big")
    with np.errstate(over="ignore"):
        small = np.unique(_mix(shingles ^ _seeds()[0]) >> np.uint64(32))[:k]
    return count + small.astype(">u4").tobytes()


def sketch_jaccard(a: bytes, b: bytes, k: int = SKETCH_K) -> float:
    """Jaccard from two bottom-k sketches (the same merge the Lua of ``ingest_core.state`` does)."""
    xs = np.frombuffer(a[HEADER:], ">u4").tolist()
    ys = np.frombuffer(b[HEADER:], ">u4").tolist()
    union = sorted(set(xs) | set(ys))[:k]
    if not union:
        return 1.0
    both = set(xs) & set(ys)
    return sum(1 for h in union if h in both) / len(union)


def bands(signature: bytes) -> list[bytes]:
    """The LSH band keys of a signature: band index byte + its ``ROWS`` slots (6 bytes each)."""
    slots = signature[HEADER:]
    return [bytes((b,)) + slots[b * ROWS : (b + 1) * ROWS] for b in range(BANDS)]


def estimate_jaccard(matches: int, slots: int = NUM_PERM) -> float:
    """Shingle Jaccard estimated from the number of equal slots, corrected for one-byte collisions."""
    share = matches / slots
    return max(0.0, min(1.0, (share - SLOT_COLLISION) / (1 - SLOT_COLLISION)))


def size_bound(a: bytes, b: bytes) -> float:
    """The largest Jaccard two shingle sets of these sizes can have: min / max of the counts."""
    na, nb = int.from_bytes(a[:HEADER], "big"), int.from_bytes(b[:HEADER], "big")
    return min(na, nb) / max(na, nb) if max(na, nb) else 1.0


def similarity(a: bytes, b: bytes) -> float:
    """Estimated Jaccard of the documents behind two signatures (slot estimate, capped by sizes)."""
    if len(a) != len(b) or len(a) <= HEADER:
        raise ValueError("signatures differ in length")
    same = int(np.count_nonzero(np.frombuffer(a[HEADER:], np.uint8) == np.frombuffer(b[HEADER:], np.uint8)))
    return min(estimate_jaccard(same, len(a) - HEADER), size_bound(a, b))


if BANDS * ROWS > NUM_PERM or BANDS > 255:
    raise ImportError("neardup: BANDS * ROWS must fit in NUM_PERM slots, and BANDS in one byte")
