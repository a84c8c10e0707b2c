#!/usr/bin/env python3
"""Run every benchmark script present and write ``docs/benchmarks.md``: machine, date, versions, one
summary table of every figure (from the scripts' ``RESULT {json}`` lines) and each script's own output.

    python benchmarks/run_all.py                  # all of them (make bench)
    python benchmarks/run_all.py --only throughput --only memory_bound   # re-run two, keep the others

Each script's raw result is kept in ``docs/benchmarks.json``; ``--only`` replaces those it re-runs there
and rewrites the report from all of them (each section says when it ran).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIRST = [
    "throughput",
    "vs_trafilatura_cli",
    "memory_bound",
    "redis_memory",
    "enqueue_rate",
    "extraction_quality",
]
"""Run order; any other script in this folder runs after these."""

TIMEOUT = 3600
"""Seconds one script may take."""


def scripts(only: list[str]) -> list[Path]:
    present = {p.stem: p for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run_all"}
    names = [n for n in FIRST if n in present] + sorted(set(present) - set(FIRST))
    return [present[n] for n in names if not only or n in only]


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        ram = "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "os": platform.platform(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "load at start": load,
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("celery", "kombu", "redis", "trafilatura", "lxml", "billiard", "urllib3"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    try:
        from ingest_core.embedded import redis_server_binary

        ver = subprocess.run([redis_server_binary(), "--version"], capture_output=True, text=True).stdout
        out["redis-server"] = next((w[2:] for w in ver.split() if w.startswith("v=")), ver.strip())
    except Exception as exc:  # noqa: BLE001 - a version line is not worth failing the report
        out["redis-server"] = f"? ({exc})"
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    status = ["git", "status", "--porcelain", "--", "worker", "producers"]
    dirty = subprocess.run(status, capture_output=True, text=True, cwd=REPO).stdout.strip()
    out["article-ingest"] = git.stdout.strip() + (" + uncommitted changes" if dirty else "")
    return out


def run(script: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"== {script.name}", flush=True)
    t = time.monotonic()
    try:
        cmd = [sys.executable, str(script)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=TIMEOUT)
        rc, out = (
            proc.returncode,
            proc.stdout + (f"\n[stderr]\n{proc.stderr[-3000:]}" if proc.returncode else ""),
        )
    except subprocess.TimeoutExpired as exc:
        rc, out = -1, f"{exc.stdout or ''}\n[timed out after {TIMEOUT} s]"
    results = []
    lines = []
    for line in (out if isinstance(out, str) else out.decode()).splitlines():
        if line.startswith("RESULT "):
            results.append(json.loads(line[7:]))
        else:
            lines.append(line)
    print("\n".join(lines[-40:]), flush=True)
    return {
        "name": script.stem,
        "rc": rc,
        "seconds": time.monotonic() - t,
        "results": results,
        "output": lines,
        "at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _met(r: dict) -> str:
    goal = r.get("goal")
    if goal is None:
        return "-"
    # a goal is on the ratio when there is one, unless the script says otherwise (``goal_on``)
    default_on = "ours" if r.get("lower_is_better") or "ratio" not in r else "ratio"
    value = r[r.get("goal_on", default_on)]
    ok = value < goal if r.get("lower_is_better") else value >= goal
    return ("yes" if ok else "no") + f" ({'<' if r.get('lower_is_better') else '>='} {goal})"


def report(runs: list[dict], started: datetime, mach: dict, vers: dict) -> str:
    out = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`benchmarks/run_all.py`) on {started:%Y-%m-%d %H:%M} UTC. "
        "Every baseline was measured in the same run as ours, on the same machine, "
        "so load from other processes hits both; "
        "ratios are the figures to read, absolute rates move with the machine.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in mach.items()],
        "",
        "## Versions",
        "",
        "- " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "",
        "## Summary",
        "",
        "| benchmark | figure | ours | baseline | ratio | goal met |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        if not r["results"]:
            status = "failed" if r["rc"] else "see its section (prints no RESULT line)"
            out.append(f"| {r['name']} | {status} | - | - | - | - |")
        for x in r["results"]:
            unit = f" {x['unit']}" if x.get("unit") else ""
            out.append(
                f"| {x['bench']} | {x['metric']} | {_fmt(x['ours'])}{unit} | {_fmt(x.get('baseline'))} | "
                f"{_fmt(x.get('ratio'))} | {_met(x)} |"
            )
    for r in runs:
        when = f", ran {r['at']}" if r.get("at") else ""
        out += ["", f"## {r['name']}", "", f"exit {r['rc']}, {r['seconds']:.0f} s{when}", "", "```"]
        out += [line.rstrip() for line in r["output"][-120:]] + ["```"]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run only this script (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    started = datetime.now(UTC)
    mach, vers = machine(), versions()
    fresh = [run(s) for s in scripts(args.only)]
    raw = args.out.with_suffix(".json")
    kept = json.loads(raw.read_text()) if args.only and raw.exists() else []
    names = [p.stem for p in scripts([])]
    by_name = {r["name"]: r for r in kept} | {r["name"]: r for r in fresh}
    runs = sorted(by_name.values(), key=lambda r: names.index(r["name"]) if r["name"] in names else 99)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(runs, indent=1))
    args.out.write_text(report(runs, started, mach, vers))
    print(f"wrote {args.out}")
    if any(r["rc"] for r in fresh):
        sys.exit(1)


if __name__ == "__main__":
    main()
