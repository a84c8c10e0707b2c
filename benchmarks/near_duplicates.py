#!/usr/bin/env python3
"""Near-duplicate detection: precision and recall on a corpus built from the benchmark's article texts.

Every ground-truth article text of the ScrapingHub benchmark (181 stories) becomes a family of documents:
the story under other sites' boilerplate, with light and heavier edits, truncated, with its facts swapped
(same template, different story), and stories on the same topic sharing a few paragraphs with it. The
truth for a pair is its exact Jaccard on word 5-grams (same shingling as the pipeline); a pair is a
near-duplicate when that is >= 0.8.

Two figures:
* detector: over all pairs of documents, LSH candidate + verified estimate >= threshold, vs exact J >= 0.8;
* stream: documents in a shuffled order through ``Deduper`` on a real Redis (the one Lua round trip per
  document the pipeline makes); a flag is right when its ``duplicate_of`` has exact J >= 0.8 with it, and
  a document should be flagged when some earlier canonical document has J >= 0.8 with it.
It also prints the Redis cost per document: round trips, bytes sent, memory per canonical document.

    PYTHONPATH=. python benchmarks/near_duplicates.py
    PYTHONPATH=. python benchmarks/near_duplicates.py --redis-url redis://127.0.0.1:6379/13
    PYTHONPATH=. python benchmarks/near_duplicates.py --ground-truth /path/to/ground-truth.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest_core.embedded import start_redis_server  # noqa: E402
from ingest_core.state import StateStore  # noqa: E402
from worker.pipeline import neardup  # noqa: E402
from worker.pipeline.dedupe import DEFAULT_THRESHOLD, Deduper  # noqa: E402

GROUND_TRUTH = REPO.parent / "shared" / "eval" / "article-extraction-benchmark" / "ground-truth.json"
"""The benchmark's ground truth: {page: {"articleBody": text, "url": ...}}."""

SITES = ["Harbour Herald", "The Daily Ledger", "Metro Wire", "Valley Post", "Coastline News", "The Observer"]
BOILERPLATE = [
    "Advertisement",
    "Share this article on Facebook Twitter LinkedIn Email",
    "Sign up for our morning newsletter and get the top stories delivered to your inbox every day.",
    "Read more from {site}",
    "Follow {site} on Twitter and Instagram for the latest updates.",
    "© 2024 {site}. All rights reserved.",
    "This article originally appeared on a partner site and is republished with permission.",
    "Comments are closed for this story.",
    "Related: the stories our readers are talking about this week",
    "Photo: staff photographer / {site}",
]
FILLER = (
    "officials residents council report market season company statement week police school city "
    "government study project plan data team agency spokesperson"
).split()


def words_of(text: str) -> list[str]:
    return text.split()


def with_boilerplate(text: str, rng: random.Random) -> str:
    """The same story under another site's header and footer lines."""
    site = rng.choice(SITES)
    lines = [b.format(site=site) for b in rng.sample(BOILERPLATE, rng.randint(2, 4))]
    cut = rng.randint(0, len(lines))
    return "\n".join([*lines[:cut], text, *lines[cut:]])


def edited(text: str, rng: random.Random, rate: float) -> str:
    """``rate`` of the words replaced, dropped or doubled (typos fixed, a name changed, a phrase cut)."""
    out = []
    for w in words_of(text):
        x = rng.random()
        if x < rate / 3:
            out.append(rng.choice(FILLER))
        elif x < 2 * rate / 3:
            continue
        elif x < rate:
            out += [w, rng.choice(FILLER)]
        else:
            out.append(w)
    return " ".join(out)


def truncated(text: str, keep: float) -> str:
    """The first ``keep`` share of the words (a syndicated teaser, a paywall cut)."""
    ws = words_of(text)
    return " ".join(ws[: max(1, int(len(ws) * keep))])


_FACT = re.compile(r"^(\d[\d.,:%]*|[A-Z][a-z]+)$")


def facts_swapped(text: str, rng: random.Random) -> str:
    """Same template, different story: every number and capitalised word replaced."""
    return " ".join(
        (str(rng.randint(2, 999)) if w[0].isdigit() else rng.choice(SITES).split()[-1])
        if _FACT.match(w)
        else w
        for w in words_of(text)
    )


def same_topic(text: str, other: str, rng: random.Random) -> str:
    """Another story on the same topic: ``other``'s text quoting a few sentences of this one."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    quoted = " ".join(rng.sample(sentences, min(len(sentences), rng.randint(1, 3))))
    paras = other.split("\n")
    at = rng.randint(0, len(paras))
    return "\n".join([*paras[:at], quoted, *paras[at:]])


def build_corpus(texts: list[str], seed: int) -> list[tuple[str, str, int]]:
    """(kind, text, story) for every document; story is the index of the text it derives from."""
    rng = random.Random(seed)
    docs: list[tuple[str, str, int]] = []
    for i, text in enumerate(texts):
        docs.append(("original", text, i))
        docs.append(("boilerplate", with_boilerplate(text, rng), i))
        docs.append(("boilerplate", with_boilerplate(text, rng), i))
        docs.append(("light_edit", with_boilerplate(edited(text, rng, 0.005), rng), i))
        docs.append(("light_edit", edited(text, rng, 0.01), i))
        for rate in (0.02, 0.05, 0.15):  # each edited word changes up to 5 shingles: 2 % is J ~ 0.8
            docs.append((f"edit_{int(rate * 100)}pct", edited(text, rng, rate), i))
        for keep in (0.95, 0.9, 0.8, 0.7, 0.5):
            docs.append((f"truncated_{int(keep * 100)}", truncated(text, keep), i))
        docs.append(("facts_swapped", facts_swapped(text, rng), i))
        other = texts[rng.randrange(len(texts))]
        if other is not text:
            docs.append(("same_topic", same_topic(text, other, rng), i))
    return docs


def exact_jaccards(shingles: list[np.ndarray]) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every pair of documents that share at least one shingle."""
    owners: dict[int, list[int]] = defaultdict(list)
    for d, sh in enumerate(shingles):
        for h in sh.tolist():
            owners[h].append(d)
    shared: Counter = Counter()
    for ds in owners.values():
        if len(ds) > 1:
            for a_i, a in enumerate(ds):
                for b in ds[a_i + 1 :]:
                    shared[(a, b)] += 1
    return {(a, b): n / (len(shingles[a]) + len(shingles[b]) - n) for (a, b), n in shared.items()}


def detector_pairs(
    sigs: np.ndarray, sizes: np.ndarray, sketches: list[bytes], threshold: float
) -> set[tuple[int, int]]:
    """Pairs an LSH lookup finds as candidates and verification accepts, over all pairs (as the Lua does)."""
    n = len(sigs)
    bands = sigs[:, : neardup.BANDS * neardup.ROWS].reshape(n, neardup.BANDS, neardup.ROWS)
    band_keys = np.ascontiguousarray(bands).view(f"V{neardup.ROWS}").reshape(n, neardup.BANDS)
    out = set()
    for a in range(n - 1):
        cand = (band_keys[a + 1 :] == band_keys[a]).any(axis=1)
        ok_size = np.minimum(sizes[a + 1 :], sizes[a]) >= threshold * np.maximum(sizes[a + 1 :], sizes[a])
        for off in np.nonzero(cand & ok_size)[0].tolist():
            b = a + 1 + off
            if neardup.sketch_jaccard(sketches[a], sketches[b]) >= threshold:
                out.add((a, b))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ground-truth", type=Path, default=GROUND_TRUTH)
    ap.add_argument(
        "--redis-url",
        help="a Redis to use (keys under a fresh prefix, removed after); default: a private redis-server",
    )
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    truth = json.loads(args.ground_truth.read_text())
    texts = [truth[k]["articleBody"] for k in sorted(truth) if len(truth[k]["articleBody"].split()) >= 30]
    docs = build_corpus(texts, args.seed)
    t0 = time.process_time()
    raw = [neardup.minhash(t) for _, t, _ in docs]
    for _, t, _ in docs:
        neardup.sketch(t)
    sig_ms = (time.process_time() - t0) * 1000 / len(docs)
    sigs = np.array([np.frombuffer(r[neardup.HEADER :], np.uint8) for r in raw])
    sizes = np.array([int.from_bytes(r[: neardup.HEADER], "big") for r in raw])
    shingles = [neardup.shingle_hashes(t) for _, t, _ in docs]
    jac = exact_jaccards(shingles)
    positives = {p for p, j in jac.items() if j >= 0.8}

    # -- detector over all pairs ------------------------------------------------------------------------
    sketches = [neardup.sketch(t) for _, t, _ in docs]
    found = detector_pairs(sigs, sizes, sketches, args.threshold)
    tp = len(found & positives)
    det_p = tp / len(found) if found else 1.0
    det_r = tp / len(positives) if positives else 1.0
    # the same figures leaving out pairs within 0.05 of the threshold, where any sketch is a coin toss
    margin = {p for p, j in jac.items() if abs(j - 0.8) < 0.05}
    clear_found, clear_pos = found - margin, positives - margin
    ctp = len(clear_found & clear_pos)
    det_p_clear = ctp / len(clear_found) if clear_found else 1.0
    det_r_clear = ctp / len(clear_pos) if clear_pos else 1.0
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # positives, found, false flags
    by_story_original = {story: d for d, (kind, _, story) in enumerate(docs) if kind == "original"}
    for d, (kind, _, story) in enumerate(docs):
        if kind == "original":
            continue
        o = by_story_original[story]
        pair = (min(o, d), max(o, d))
        is_pos = pair in positives
        kinds[kind][0] += is_pos
        kinds[kind][1] += is_pos and pair in found
        kinds[kind][2] += (not is_pos) and pair in found

    # -- stream through the real Deduper on Redis -------------------------------------------------------
    proc = None
    tmp = Path(tempfile.mkdtemp(prefix="neardup-bench-"))
    url = args.redis_url
    if not url:
        proc, url = start_redis_server(tmp)
    client = redis.Redis.from_url(url)
    prefix = f"ndbench{uuid.uuid4().hex[:8]}"
    store = StateStore(client, prefix=prefix)
    dedupe = Deduper(store, threshold=args.threshold)
    order = list(range(len(docs)))
    random.Random(args.seed).shuffle(order)
    ids = [uuid.UUID(int=random.Random(d).getrandbits(128)).hex for d in range(len(docs))]
    dedupe.check(uuid.uuid4().hex, "warm up the script cache with one document of text")
    store.r.delete(*store.r.keys(f"{prefix}:*"))
    mem0 = client.info("memory")["used_memory"]
    st0 = client.info("stats")
    stats0 = client.info("commandstats").get("cmdstat_evalsha", {})
    calls0, usec0 = stats0.get("calls", 0), stats0.get("usec", 0)
    canonical: list[int] = []
    flagged: dict[int, str] = {}
    t0 = time.perf_counter()
    for d in order:
        res = dedupe.check(ids[d], docs[d][1], raw[d])
        if res.duplicate_of is None:
            canonical.append(d)
        else:
            flagged[d] = res.duplicate_of
    wall_ms = (time.perf_counter() - t0) * 1000 / len(docs)
    st1 = client.info("stats")
    stats1 = client.info("commandstats").get("cmdstat_evalsha", {})
    calls1, usec1 = stats1.get("calls", 0), stats1.get("usec", 0)
    mem1 = client.info("memory")["used_memory"]
    key_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in client.keys(f"{prefix}:*"))
    id_to_doc = {ids[d]: d for d in range(len(docs))}

    seen_canonical: list[int] = []
    should, right, hit = 0, 0, 0
    for d in order:
        near = [c for c in seen_canonical if jac.get((min(c, d), max(c, d)), 0.0) >= 0.8]
        if near:
            should += 1
            hit += d in flagged
        if d in flagged:
            o = id_to_doc[flagged[d]]
            right += jac.get((min(o, d), max(o, d)), 0.0) >= 0.8
        else:
            seen_canonical.append(d)
    str_p = right / len(flagged) if flagged else 1.0
    str_r = hit / should if should else 1.0
    client.delete(*client.keys(f"{prefix}:*"))
    if proc:
        proc.terminate()
        proc.wait(10)

    n = len(docs)
    print(
        f"corpus: {len(texts)} stories -> {n} documents; {len(positives)} pairs with exact J >= 0.8 "
        f"(word 5-grams); MinHash {neardup.NUM_PERM} x 1 byte, LSH {neardup.BANDS} bands x "
        f"{neardup.ROWS} rows, verified on bottom-{neardup.SKETCH_K} sketches, threshold {args.threshold}"
    )
    print()
    print("| figure | precision | recall | flagged | should |")
    print("|---|---|---|---|---|")
    print(f"| detector, all pairs | {det_p:.4f} | {det_r:.4f} | {len(found)} | {len(positives)} |")
    print(
        f"| detector, pairs with abs(J - 0.8) >= 0.05 ({len(margin)} left out) | {det_p_clear:.4f} "
        f"| {det_r_clear:.4f} | {len(clear_found)} | {len(clear_pos)} |"
    )
    print(f"| stream through Redis (Deduper) | {str_p:.4f} | {str_r:.4f} | {len(flagged)} | {should} |")
    print()
    print("| variant vs its original | pairs J >= 0.8 | found | recall | false flags (J < 0.8) |")
    print("|---|---|---|---|---|")
    for kind, (pos, got, false) in sorted(kinds.items()):
        print(f"| {kind} | {pos} | {got} | {got / pos if pos else 1:.3f} | {false} |")
    print()
    trips = (calls1 - calls0) / n
    commands = (st1["total_commands_processed"] - st0["total_commands_processed"] - 2) / n
    sent = (st1["total_net_input_bytes"] - st0["total_net_input_bytes"]) / n
    print("| Redis cost | per document |")
    print("|---|---|")
    print(f"| round trips (EVALSHA) | {trips:.2f} |")
    print(f"| commands processed | {commands:.2f} |")
    print(f"| bytes sent to Redis | {sent:.0f} |")
    per_canonical = (mem1 - mem0) / len(canonical)
    print(f"| used_memory delta per canonical document ({len(canonical)}) | {per_canonical:.0f} |")
    print(
        f"| MEMORY USAGE of content + nd:sketch + nd:bands per canonical document | "
        f"{key_bytes / len(canonical):.0f} |"
    )
    redis_us = (usec1 - usec0) / max(1, calls1 - calls0)
    print(f"| Redis CPU per check (us, INFO commandstats) | {redis_us:.0f} |")
    print(f"| wall time per check incl. sketch (ms, loopback) | {wall_ms:.2f} |")
    print(f"| MinHash + sketch CPU per document (ms) | {sig_ms:.2f} |")
    figures = (
        ("detector_precision", det_p),
        ("detector_recall", det_r),
        ("stream_precision", str_p),
        ("stream_recall", str_r),
        ("redis_round_trips_per_doc", trips),
        ("redis_bytes_per_canonical_doc", key_bytes / len(canonical)),
    )
    for metric, value in figures:
        print("RESULT " + json.dumps({"bench": "near_duplicates", "metric": metric, "ours": round(value, 4)}))


if __name__ == "__main__":
    main()
