#!/usr/bin/env python3
"""Redis memory per URL, per fingerprint and per queued message, measured on a private redis-server.

Claims N URL ids through ``StateStore.claim`` (the frontier hash), registers N text fingerprints the way
``content_owner`` does (16-byte field, 32-char owner id), runs distinct texts through the real ``Deduper``
(exact hash plus near-duplicate signature and LSH bands, kept per canonical text), queues N fetch tasks
through ``producers.submit`` (one Celery message each), and measures the size of a packed page (what one
``process`` message carries).
Each figure is ``INFO used_memory`` delta / N and ``MEMORY USAGE`` of the key / N.

    PYTHONPATH=. python benchmarks/redis_memory.py [--n 200000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus, corpus_name, result, table  # noqa: E402

from ingest_core.canonical import url_id  # noqa: E402
from ingest_core.embedded import EmbeddedRedis  # noqa: E402
from ingest_core.state import StateStore  # noqa: E402

CHUNK = 1000


def _used(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="URLs and fingerprints")
    parser.add_argument("--messages", type=int, default=20_000, help="fetch messages queued")
    parser.add_argument("--docs", type=int, default=10_000, help="distinct texts through the Deduper")
    args = parser.parse_args()
    rows, n = [], args.n
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        redis_dir = Path(tmp) / "redis"
        url, _ = EmbeddedRedis(redis_dir, appendonly=False).ensure()
        os.environ["INGEST_BROKER_URL"] = url  # the Celery app below publishes here
        try:
            r = redis.Redis.from_url(url)
            state = StateStore(r, prefix="mem")
            base = _used(r)
            for start in range(0, n, CHUNK):
                ids = [
                    url_id(f"https://site{i % 997}.example/a/{i}")
                    for i in range(start, min(start + CHUNK, n))
                ]
                state.claim(ids, batch="mem")
            frontier = _used(r) - base
            key_bytes = r.memory_usage(state.key("urls"), samples=0) or 0
            rows.append(["frontier: one URL (urls hash)", frontier / n, key_bytes / n])

            base = _used(r)
            pipe = r.pipeline(transaction=False)
            for i in range(n):
                pipe.hsetnx(state.key("content"), os.urandom(16), os.urandom(16).hex())
                if i % CHUNK == CHUNK - 1:
                    pipe.execute()
            pipe.execute()
            prints = _used(r) - base
            key_bytes = r.memory_usage(state.key("content"), samples=0) or 0
            rows.append(["dedupe: one exact-text fingerprint (content hash)", prints / n, key_bytes / n])

            from worker.pipeline.dedupe import Deduper

            deduper, docs = Deduper(state), args.docs
            words = [w for page in corpus()[:20] for w in page.split() if w.isalpha()][:20_000]
            rng = random.Random(7)
            base = _used(r)
            for i in range(docs):  # distinct texts: every one becomes canonical and keeps its signature
                deduper.check(os.urandom(16).hex(), " ".join(rng.choices(words, k=400)) + f" doc {i}")
            canonical = _used(r) - base - docs * (prints / n)
            rows.append(
                ["dedupe: near-duplicate state of one canonical text (sig + bands)", canonical / docs, "-"]
            )

            from producers import submit

            base = _used(r)
            m = args.messages
            submit((f"https://queued{i % 101}.example/p/{i}" for i in range(m)), state=state)
            queued = _used(r) - base
            key_bytes = r.memory_usage(state.key("jobs"), samples=0) or 0
            rows.append(["frontier: one pending URL (job, host queue, state)", queued / m, key_bytes / m])
        finally:
            EmbeddedRedis(redis_dir).stop()

    from ingest_core.fetch import FetchResult
    from worker.runner import pack_page

    pages = corpus()
    packed = [
        len(pack_page(FetchResult("u", "u", 200, {}, "text/html", "utf-8", h, len(h), 0.0))) for h in pages
    ]
    html_kb = statistics.mean(len(h.encode()) for h in pages) / 1024
    rows.append(
        [
            f"claim check: one fetched page in Redis (HTML {html_kb:.0f} KiB mean)",
            statistics.mean(packed),
            "-",
        ]
    )
    table(
        f"Redis memory ({n} URLs and fingerprints, {args.messages} messages; pages: {corpus_name()})",
        ["what", "bytes each (used_memory delta)", "bytes each (MEMORY USAGE of key)"],
        rows,
    )
    result("redis_memory", "bytes per URL in the frontier", rows[0][1], unit="B")
    result("redis_memory", "bytes per text fingerprint", rows[1][1], unit="B")
    result("redis_memory", "bytes per canonical text, near-duplicate state", rows[2][1], unit="B")
    result("redis_memory", "bytes per pending URL in the frontier", rows[3][1], unit="B")
    result(
        "redis_memory", "bytes per fetched page waiting for processing (claim check)", rows[4][1], unit="B"
    )


if __name__ == "__main__":
    main()
