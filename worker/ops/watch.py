"""``ingest stats --watch``: the fleet's counters, rates and queue depths as a live terminal table."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ingest_core.state import TERMINAL_STATES, StateStore, summarize
from worker.ops.queues import queue_depths

ROWS = ("submitted", *TERMINAL_STATES, "pending")
"""Rows of the table, in order."""


@dataclass
class Snapshot:
    """Counters and queue depths at one moment."""

    at: float
    summary: dict[str, Any]
    queues: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    frontier: dict[str, Any] = field(default_factory=dict)


def take(state: StateStore, broker_url: str, batch: str | None = None) -> Snapshot:
    """Read one snapshot of the fleet (or of one batch) now."""
    return Snapshot(
        time.monotonic(),
        summarize(state.counters(batch)),
        queue_depths(broker_url),
        state.metrics(),
        state.frontier.stats(),
    )


def _mean(metrics: dict[str, float], name: str) -> str:
    count = metrics.get(f"{name}:count", 0.0)
    return f"{metrics.get(f'{name}:sum', 0.0) / count * 1000:.0f} ms" if count else "-"


def render(current: Snapshot, previous: Snapshot | None = None) -> Group:
    """The table for ``current``; rates (per second) are the change since ``previous``."""
    elapsed = current.at - previous.at if previous else 0.0
    table = Table(title="ingest stats", expand=False)
    table.add_column("state")
    table.add_column("count", justify="right")
    table.add_column("per s", justify="right")
    table.add_column("reasons")
    for row in ROWS:
        value = current.summary.get(row, 0)
        rate = "-"
        if previous is not None and elapsed > 0 and row != "pending":  # a rate of ends, not of a level
            rate = f"{(value - previous.summary.get(row, 0)) / elapsed:.1f}"
        reasons = current.summary.get(f"{row}_reasons", {})
        table.add_row(row, str(value), rate, ", ".join(f"{k}: {v}" for k, v in reasons.items()))
    queues = Table(title="queues", expand=False)
    for name in current.queues:
        queues.add_column(name, justify="right")
    queues.add_row(*(str(n) for n in current.queues.values()))
    latency = (
        f"mean fetch {_mean(current.metrics, 'fetch_seconds')}, "
        f"mean process {_mean(current.metrics, 'process_seconds')}, "
        f"{current.metrics.get('fetched_bytes', 0) / 1e6:.1f} MB fetched"
    )
    f = current.frontier
    frontier = (
        f"frontier: {f.get('waiting', 0)} waiting on {f.get('hosts', 0)} hosts "
        f"({f.get('hosts_ready', 0)} ready), {f.get('fetching', 0)} fetching, "
        f"{f.get('processing', 0)} to process, {f.get('retrying', 0)} backing off"
        + (f"; dispatch paused: {f['paused']}" if f.get("paused") else "")
        + "".join(
            f"\n  {h['host']}: {h['waiting']} waiting, next in {h['next_in']} s" for h in f.get("busiest", [])
        )
    )
    return Group(table, queues, latency, frontier)


def watch(
    state: StateStore,
    broker_url: str,
    *,
    batch: str | None = None,
    interval: float = 2.0,
    iterations: int | None = None,
    console: Console | None = None,
) -> None:
    """Redraw the table every ``interval`` seconds until interrupted (or ``iterations`` redraws)."""
    previous = None
    n = 0
    with Live(console=console, auto_refresh=False) as live:
        try:
            while iterations is None or n < iterations:
                current = take(state, broker_url, batch)
                live.update(render(current, previous), refresh=True)
                previous, n = current, n + 1
                if iterations is None or n < iterations:
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass
