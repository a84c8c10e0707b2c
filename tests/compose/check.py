"""The compose test's verdict: every URL terminal, the counts add up, stored == exported, each id once.

    python3 check.py EXPECTED_JSON STATS_JSON EXPORT_JSONL RAW_IDS
EXPECTED_JSON is make_pages.py's output, STATS_JSON `ingest stats --json`, EXPORT_JSONL `ingest export
--to -`, RAW_IDS the id of every line in the store's published files (copies included). Prints the figures
and exits 1 with the reasons when a check fails.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def main() -> int:
    expected = json.loads(Path(sys.argv[1]).read_text())
    stats = json.loads(Path(sys.argv[2]).read_text())
    exported = [json.loads(line) for line in Path(sys.argv[3]).read_text().splitlines() if line.strip()]
    raw = [line for line in Path(sys.argv[4]).read_text().splitlines() if line.strip()]
    ids = Counter(r["id"] for r in exported)
    terminal = stats["stored"] + stats["duplicate"] + stats["skipped"] + stats["failed"]
    problems = []
    if stats["pending"]:
        problems.append(f"{stats['pending']} URLs not terminal")
    if terminal != stats["submitted"]:
        problems.append(f"terminal {terminal} != submitted {stats['submitted']}")
    for key in ("submitted", "stored", "duplicate", "failed"):
        if stats[key] != expected[key]:
            problems.append(f"{key} {stats[key]} != expected {expected[key]}")
    if len(exported) != stats["stored"]:
        problems.append(f"exported {len(exported)} != stored {stats['stored']}")
    if len(ids) != len(exported):
        problems.append(f"ids exported more than once: {[i for i, n in ids.items() if n > 1][:5]}")
    missing_raw = set(ids) - set(raw)
    if missing_raw:
        problems.append(f"{len(missing_raw)} exported ids not in the published files")
    print(
        f"compose-test: submitted {stats['submitted']}, stored {stats['stored']}, duplicate "
        f"{stats['duplicate']}, skipped {stats['skipped']}, failed {stats['failed']} "
        f"({stats.get('failed_reasons', {})}), pending {stats['pending']}; exported {len(exported)} records "
        f"({len(ids)} ids); {len(raw)} lines in the store ({len(raw) - len(set(raw))} re-delivered copies)"
    )
    for p in problems:
        print(f"compose-test: FAIL {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
