"""The ``ingest`` command line."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from kombu.exceptions import OperationalError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest_core.settings import Settings
from producers.cli import source_options

console = Console(stderr=True)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group()
@click.option("--broker-url", envvar=None, default=None, help="Celery broker [INGEST_BROKER_URL].")
@click.option("--redis-url", default=None, help="Shared state Redis [INGEST_REDIS_URL].")
@click.option("--storage-url", default=None, help="Where records go [INGEST_STORAGE_URL].")
@click.option("--data-dir", default=None, help="Working directory [INGEST_DATA_DIR].")
@click.option(
    "--allow-private-networks/--no-allow-private-networks",
    default=None,
    help="Allow fetching private/loopback addresses [INGEST_ALLOW_PRIVATE_NETWORKS].",
)
@click.pass_context
def main(ctx: click.Context, **flags: Any) -> None:
    """article-ingest: URLs in, clean deduplicated JSON records out."""
    try:
        settings = Settings.from_env(**flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    # subprocesses (workers) and the Celery app module read the environment: hand the flags down
    for name, value in flags.items():
        if value is not None:
            os.environ[f"INGEST_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    ctx.obj = {"settings": settings}


# -- sources -------------------------------------------------------------------------------------------


def _use_broker(settings: Settings, *, start: bool) -> tuple[str, bool]:
    from ingest_core.embedded import resolve_broker

    try:
        url, started = resolve_broker(settings.broker_url, settings.data_dir, start=start)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    os.environ["INGEST_BROKER_URL"] = url
    return url, started


# -- submit ----------------------------------------------------------------------------------------------


@main.command()
@click.argument("urls", nargs=-1)
@click.option("-f", "--file", "files", multiple=True, help="File of URLs, one a line ('-' for stdin).")
@source_options
@click.option("--force", is_flag=True, help="Queue URLs even if they were stored before.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def submit(
    ctx: click.Context,
    urls: tuple[str, ...],
    files: tuple[str, ...],
    force: bool,
    as_json: bool,
    **sources: tuple[str, ...],
) -> None:
    """Validate URLs (positional, files, stdin, feeds, sitemaps) and queue them for the workers."""
    settings = _settings(ctx)
    _use_broker(settings, start=False)
    result = _submit(urls, files, force, settings, **sources)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "batch": result.batch,
                    "submitted": result.submitted,
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "rejected": [{"url": u, "reason": r} for u, r in result.rejected],
                }
            )
        )
        return
    for url, reason in result.rejected[:50]:
        console.print(f"[yellow]rejected[/] {url!r}: {reason}")
    console.print(
        f"batch {result.batch}: {result.accepted} accepted, {result.duplicates} already seen, "
        f"{result.rejected_total} rejected"
    )


def _submit(
    urls: tuple[str, ...], files: tuple[str, ...], force: bool, settings: Settings, **sources: tuple[str, ...]
) -> Any:
    from producers import BrokerUnavailable
    from producers.cli import submit_command_sources

    try:
        return submit_command_sources(settings, urls=urls, files=files, force=force, **sources)
    except BrokerUnavailable as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(3) from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


# -- worker ----------------------------------------------------------------------------------------------


def worker_commands(
    queues: list[str], *, fetch_concurrency: int, process_concurrency: int, loglevel: str = "INFO"
) -> list[list[str]]:
    """The celery worker command lines for the chosen queues: threads for fetch, prefork for process."""
    tag = f"{os.getpid()}"
    base = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-E",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    cmds = []
    if "fetch" in queues:
        cmds.append(
            [*base, "-Q", "fetch", "-P", "threads", "-c", str(fetch_concurrency), "-n", f"fetch-{tag}@%h"]
        )
    if "process" in queues:
        cmds.append(
            [
                *base,
                "-Q",
                "process",
                "-P",
                "prefork",
                "-c",
                str(process_concurrency),
                "-n",
                f"process-{tag}@%h",
            ]
        )
    return cmds


def _concurrencies(
    settings: Settings, concurrency: int | None, fetch_concurrency: int | None
) -> tuple[int, int]:
    process = concurrency or settings.process_concurrency or os.cpu_count() or 1
    return fetch_concurrency or settings.fetch_concurrency, process


def start_workers(cmds: list[list[str]], log_dir: Path | None = None) -> list[subprocess.Popen]:
    procs = []
    for cmd in cmds:
        out: Any = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            name = cmd[cmd.index("-Q") + 1]
            out = open(log_dir / f"worker-{name}.log", "ab")  # noqa: SIM115 - lives as long as the worker
        procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None))
    return procs


def stop_workers(procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    """Warm shutdown (SIGTERM: finish the task in hand), then SIGKILL what is left after ``timeout``."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@main.command()
@click.option("--queues", "-Q", default="fetch,process", show_default=True, help="Queues to consume.")
@click.option("--concurrency", "-c", type=int, default=None, help="Processes of the process worker.")
@click.option("--fetch-concurrency", type=int, default=None, help="Threads of the fetch worker.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.pass_context
def worker(
    ctx: click.Context, queues: str, concurrency: int | None, fetch_concurrency: int | None, loglevel: str
) -> None:
    """Start workers: a threads pool for ``fetch``, a prefork pool for ``process``."""
    settings = _settings(ctx)
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(wanted) - {"fetch", "process"}
    if unknown or not wanted:
        raise click.UsageError(f"unknown queue(s): {', '.join(sorted(unknown)) or '(none)'}")
    url, started = _use_broker(settings, start=True)
    if started:
        console.print(f"started embedded Redis at {url}")
    fetch_c, process_c = _concurrencies(settings, concurrency, fetch_concurrency)
    procs = start_workers(
        worker_commands(wanted, fetch_concurrency=fetch_c, process_concurrency=process_c, loglevel=loglevel)
    )
    signal.signal(signal.SIGTERM, lambda *_: stop_workers(procs))
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop_workers(procs)
    codes = [p.returncode for p in procs]
    raise SystemExit(max(abs(c or 0) for c in codes) if any(codes) else 0)


# -- run -------------------------------------------------------------------------------------------------


@main.command()
@click.argument("urls", nargs=-1)
@click.option("-f", "--file", "files", multiple=True, help="File of URLs, one a line ('-' for stdin).")
@source_options
@click.option("--force", is_flag=True, help="Fetch URLs even if they were stored before.")
@click.option("--concurrency", "-c", type=int, default=None, help="Processes of the process worker.")
@click.option("--fetch-concurrency", type=int, default=None, help="Threads of the fetch worker.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.pass_context
def run(
    ctx: click.Context,
    urls: tuple[str, ...],
    files: tuple[str, ...],
    force: bool,
    concurrency: int | None,
    fetch_concurrency: int | None,
    timeout: float | None,
    as_json: bool,
    **sources: tuple[str, ...],
) -> None:
    """All in one: broker (embedded unless configured), local workers, submit, wait, summary."""
    settings = _settings(ctx)
    if not urls and not files and not any(sources.values()):
        raise click.UsageError("give URLs, -f FILE, --feed, --sitemap or --feeds-file")
    from ingest_core.embedded import EmbeddedRedis

    url, started = _use_broker(settings, start=True)
    fetch_c, process_c = _concurrencies(settings, concurrency, fetch_concurrency)
    log_dir = Path(settings.data_dir) / "logs"
    procs = start_workers(
        worker_commands(
            ["fetch", "process"], fetch_concurrency=fetch_c, process_concurrency=process_c, loglevel="WARNING"
        ),
        log_dir,
    )
    t0 = time.monotonic()
    summary: dict[str, Any] = {}
    try:
        result = _submit(urls, files, force, settings, **sources)
        summary = _wait(result.batch, procs, timeout, settings)
    finally:
        stop_workers(procs)
        from worker.runner import storage_from_settings

        # opening the store publishes parts of killed workers (JSONL) or uploads a left-over spool (S3)
        storage_from_settings(settings).close()
        storage = settings.storage_url.removeprefix("file://")
        if started:
            EmbeddedRedis(Path(settings.data_dir) / "redis").stop()
    elapsed = time.monotonic() - t0
    summary.update(
        {
            "batch": result.batch,
            "seconds": round(elapsed, 2),
            "docs_per_second": round(summary.get("stored", 0) / elapsed, 2) if elapsed else 0.0,
            "records": storage if "://" in storage else str(Path(storage).resolve()),
            "broker": url,
        }
    )
    if as_json:
        click.echo(json.dumps(summary))
    _print_summary(summary)
    if summary.get("pending"):
        raise SystemExit(4)


def _wait(batch: str, procs: list[subprocess.Popen], timeout: float | None, settings: Settings) -> dict:
    from ingest_core.state import summarize
    from worker.runner import state_from_settings

    state = state_from_settings(settings.replace(broker_url=os.environ["INGEST_BROKER_URL"]))
    deadline = time.monotonic() + timeout if timeout else None
    columns = (
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("ingest", total=None, detail="")
        while True:
            s = summarize(state.counters(batch))
            done = s["submitted"] - s["pending"]
            bar.update(
                task,
                total=s["submitted"],
                completed=done,
                detail=f"stored {s['stored']} dup {s['duplicate']} skip {s['skipped']} fail {s['failed']}",
            )
            if s["pending"] <= 0:
                return s
            if any(p.poll() is not None for p in procs):
                console.print("[red]a worker exited early; see logs in the data directory[/]")
                return s
            if deadline and time.monotonic() > deadline:
                console.print(f"[red]timed out with {s['pending']} URLs pending[/]")
                return s
            time.sleep(0.2)


def _print_summary(s: dict) -> None:
    table = Table(title=f"ingest run: {s.get('submitted', 0)} URLs in {s.get('seconds', 0)} s")
    table.add_column("state")
    table.add_column("count", justify="right")
    table.add_column("reasons")
    for state in ("stored", "duplicate", "skipped", "failed", "pending"):
        reasons = s.get(f"{state}_reasons", {})
        table.add_row(state, str(s.get(state, 0)), ", ".join(f"{k}: {v}" for k, v in reasons.items()))
    console.print(table)
    console.print(f"{s.get('docs_per_second', 0)} docs/s; records in {s.get('records')}")


# -- stats, failures, extract ------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--batch", default=None, help="Counters of one submission batch only.")
@click.option("--watch", is_flag=True, help="Live table with rates, redrawn every --interval seconds.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between redraws.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool, batch: str | None, watch: bool, interval: float) -> None:
    """Counters of terminal states (fleet-wide) and queue depths."""
    import redis

    from ingest_core.state import summarize
    from worker.ops.queues import queue_depths
    from worker.runner import state_from_settings

    settings = _settings(ctx)
    url, _ = _use_broker(settings, start=False)
    settings = settings.replace(broker_url=url)
    if watch:
        from worker.ops.watch import watch as watch_live

        watch_live(state_from_settings(settings), url, batch=batch, interval=interval)
        return
    try:
        summary = summarize(state_from_settings(settings).counters(batch))
        summary["queues"] = queue_depths(url)  # Redis or AMQP
    except (redis.RedisError, OSError, OperationalError) as exc:
        console.print(f"[red]error:[/] broker or state store unreachable: {exc}")
        raise SystemExit(3) from None
    if as_json:
        click.echo(json.dumps(summary))
        return
    _print_summary(summary)
    console.print(f"queues: {summary['queues']}")


@main.command()
@click.option("--reason", default=None, help="Only this reason code.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--dead", is_flag=True, help="One line per URL still failed: attempts, last reason and time.")
@click.pass_context
def failures(ctx: click.Context, reason: str | None, limit: int, as_json: bool, dead: bool) -> None:
    """The newest skipped and failed URLs, with their reasons (``--dead``: failed URLs to retry)."""
    from worker.runner import state_from_settings

    if dead:
        from worker.ops.deadletters import print_dead_letters

        print_dead_letters(ctx, reason, limit, as_json)
        return
    settings = _settings(ctx)
    url, _ = _use_broker(settings, start=False)
    events = state_from_settings(settings.replace(broker_url=url)).failures(limit, reason)
    for e in events:
        click.echo(
            json.dumps(e) if as_json else f"{e['state']:8} {e['reason']:22} {e['url']}  {e.get('detail', '')}"
        )


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--url", default=None, help="The page's URL (for links, metadata and the record).")
def extract(files: tuple[str, ...], url: str | None) -> None:
    """Offline: extract, clean and enrich local HTML files; one JSON record per line on stdout."""
    from ingest_core.canonical import url_id
    from worker.pipeline.clean import Cleaner
    from worker.pipeline.enrich import Enricher
    from worker.pipeline.extract import Extractor
    from worker.record import utc_now_iso
    from worker.runner import Job, build_record

    settings = Settings.from_env()
    extractor, cleaner, enricher = Extractor(max_bytes=settings.max_bytes), Cleaner(), Enricher()
    for path in files:
        raw = gzip.open(path).read() if path.endswith(".gz") else Path(path).read_bytes()
        html = raw.decode("utf-8", errors="replace")
        page_url = url or Path(path).resolve().as_uri()
        job = Job(url=page_url, id=url_id(page_url), token="", batch="", source="file")
        doc = extractor.extract(html, page_url)
        if doc is None:
            click.echo(
                json.dumps({"id": job.id, "url": page_url, "file": path, "text": "", "skipped": "no_text"})
            )
            continue
        record = build_record(
            job,
            cleaner.clean(doc),
            final_url=page_url,
            status=200,
            fetched_at=utc_now_iso(),
            enricher=enricher,
        )
        record["file"] = path
        click.echo(json.dumps(record, ensure_ascii=False))


# -- commands defined elsewhere: one add_command line each, keep this block at the end ----------------------

from worker.ops.deadletters import retry_failed_command  # noqa: E402
from worker.ops.export import export_command  # noqa: E402
from worker.ops.flower import flower_command  # noqa: E402
from worker.ops.metrics import metrics_command  # noqa: E402

main.add_command(retry_failed_command)
main.add_command(export_command)
main.add_command(flower_command)
main.add_command(metrics_command)

from producers.cli import serve as serve_command  # noqa: E402
from producers.cli import watch as watch_command  # noqa: E402

main.add_command(watch_command)
main.add_command(serve_command)


if __name__ == "__main__":
    main()
