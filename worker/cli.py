"""The ``ingest`` command line: the CLI sits above ``producers`` and ``worker`` and imports both.

Common options (``--broker-url``, ``--data-dir``, ``-s NAME=VALUE``, ``--config FILE``, ...) are accepted
before or after the subcommand. Settings precedence: flag > environment > settings file > default. With no
broker configured, each command that needs state uses the embedded Redis of the data directory (started
when needed, stopped by its last user), so ``stats`` and ``failures`` work after a run as during one.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from ingest_core.cliutil import broker_settings, settings_of
from ingest_core.settings import Settings, setting_name
from producers.cli import source_options

console = Console(stderr=True, soft_wrap=True, highlight=False)

EXIT_BROKER = 3
"""Exit status: the broker or the state store is unreachable."""
EXIT_PENDING = 4
"""Exit status of ``ingest run``: it gave up (``--timeout``) with URLs of its own still pending."""
EXIT_INTERRUPTED = 130
"""Exit status of ``ingest run`` interrupted (Ctrl-C, SIGTERM) with URLs still pending: run it again."""


# -- common options, accepted on the group and on every subcommand ------------------------------------------

_FLAG_SETTINGS = ("broker_url", "redis_url", "storage_url", "data_dir", "allow_private_networks")


def _common_params() -> list[click.Parameter]:
    return [
        click.Option(["--broker-url"], default=None, help="Celery broker [INGEST_BROKER_URL]."),
        click.Option(["--redis-url"], default=None, help="Shared state Redis [INGEST_REDIS_URL]."),
        click.Option(["--storage-url"], default=None, help="Where records go [INGEST_STORAGE_URL]."),
        click.Option(["--data-dir"], default=None, help="Working directory [INGEST_DATA_DIR]."),
        click.Option(
            ["--allow-private-networks/--no-allow-private-networks"],
            default=None,
            help="Allow fetching private/loopback addresses [INGEST_ALLOW_PRIVATE_NETWORKS].",
        ),
        click.Option(
            ["-s", "--set", "set_"],
            multiple=True,
            metavar="NAME=VALUE",
            help="Any setting, by its environment name (INGEST_ optional): -s HOST_INTERVAL=0.5.",
        ),
        click.Option(["--config"], default=None, help="TOML settings file [INGEST_CONFIG]."),
    ]


def _apply_common(ctx: click.Context, flags: dict[str, Any]) -> None:
    """Hand the flags down as environment (the workers and the Celery app read it) and rebuild settings."""
    if flags.get("config"):
        os.environ["INGEST_CONFIG"] = str(Path(flags["config"]).resolve())
    for pair in flags.get("set_") or ():
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"-s expects NAME=VALUE, got {pair!r}")
        try:
            os.environ[f"INGEST_{setting_name(name).upper()}"] = value
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    for name in _FLAG_SETTINGS:
        value = flags.get(name)
        if value is not None:
            os.environ[f"INGEST_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    root = ctx.find_root()
    root.obj = {**(root.obj or {}), "settings": settings}


def with_common_options(command: click.Command) -> click.Command:
    """Accept the common options on ``command`` too (so ``ingest run --data-dir D URL`` works)."""
    names = {"broker_url", "redis_url", "storage_url", "data_dir", "allow_private_networks", "set_", "config"}
    command.params.extend(_common_params())
    inner = command.callback
    assert inner is not None

    def callback(*args: Any, **kwargs: Any) -> Any:
        flags = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        if any(v not in (None, ()) for v in flags.values()):
            _apply_common(click.get_current_context(), flags)
        return inner(*args, **kwargs)

    command.callback = callback
    return command


def _version() -> str:
    try:
        return metadata.version("article-ingest")
    except metadata.PackageNotFoundError:
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "-V", "--version", prog_name="ingest")
@click.pass_context
def main(ctx: click.Context, **flags: Any) -> None:
    """article-ingest: URLs in, clean deduplicated JSON records out."""
    _apply_common(ctx, flags)


main.params.extend(_common_params())


def _say(message: str) -> None:
    console.print(message, markup=False)


# -- submit ------------------------------------------------------------------------------------------------


@main.command()
@click.argument("urls", nargs=-1)
@click.option("-f", "--file", "files", multiple=True, help="File of URLs, one a line ('-' for stdin).")
@source_options
@click.option("--force", is_flag=True, help="Queue URLs again even if they were stored or are pending.")
@click.option("--warc", "warcs", multiple=True, help="WARC/ARC file (path or http(s) URL); repeatable.")
@click.option(
    "--warc-list", "warc_lists", multiple=True, help="File of WARC paths/URLs, one a line (.gz ok)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def submit(
    ctx: click.Context,
    urls: tuple[str, ...],
    files: tuple[str, ...],
    force: bool,
    warcs: tuple[str, ...],
    warc_lists: tuple[str, ...],
    as_json: bool,
    **sources: tuple[str, ...],
) -> None:
    """Validate URLs (positional, files, stdin, feeds, sitemaps) and queue them for the workers; the pages
    of WARC files (--warc, --warc-list) go straight to the process stage.

    Exits 1 when feeds or sitemaps were given and every one of them failed (nothing was read)."""
    settings = broker_settings(ctx)
    web = None
    if urls or files or any(sources.values()) or not (warcs or warc_lists):
        result, web = _submit(urls, files, force, settings, **sources)
    else:
        result = None
    if warcs or warc_lists:
        result = _submit_warcs(settings, warcs, warc_lists, force, result)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "batch": result.batch,
                    "submitted": result.submitted,
                    "accepted": result.accepted,
                    "adopted": result.adopted,
                    "duplicates": result.duplicates,
                    "rejected": [{"url": u, "reason": r} for u, r in result.rejected],
                }
            )
        )
    else:
        for url, reason in result.rejected[:50]:
            _say(f"rejected {url!r}: {reason}")
        _say(
            f"batch {result.batch}: {result.accepted} accepted, {result.adopted} already pending, "
            f"{result.duplicates} already seen, {result.rejected_total} rejected"
        )
    if _all_sources_failed(web, result, urls, files):
        _say("error: every feed and sitemap failed; nothing was read")
        raise SystemExit(1)


def _all_sources_failed(web: Any, result: Any, urls: tuple[str, ...], files: tuple[str, ...]) -> bool:
    if web is None or urls or files or result.submitted:
        return False
    return bool(web.problems) and web.counts.get("documents", 0) <= len(web.problems)


def _submit(
    urls: tuple[str, ...],
    files: tuple[str, ...],
    force: bool,
    settings: Settings,
    on_progress: Callable[[Any], None] | None = None,
    **sources: tuple[str, ...],
) -> tuple[Any, Any]:
    from producers import BrokerUnavailable
    from producers.cli import submit_command_sources

    try:
        return submit_command_sources(
            settings, urls=urls, files=files, force=force, on_progress=on_progress, **sources
        )
    except BrokerUnavailable as exc:
        _say(f"error: {exc}")
        raise SystemExit(EXIT_BROKER) from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


def _submit_warcs(
    settings: Settings,
    warcs: tuple[str, ...],
    warc_lists: tuple[str, ...],
    force: bool,
    result: Any,
    collect_ids: set[str] | None = None,
    stop: list[str] | None = None,
) -> Any:
    """Submit the pages of WARC files into the batch of ``result`` (a new one when None): each claimed page
    is published as an ``ingest.process`` task by name. Returns the batch's ``SubmitResult``."""
    import itertools

    import redis

    from ingest_core.fetch import Fetcher
    from ingest_core.state import state_from_settings
    from producers import BrokerUnavailable
    from producers.cli import tracking_params
    from producers.sources.warc import WarcIngest, iter_warc_list

    app, publish = _process_publisher(settings)
    queue = redis.Redis.from_url(settings.broker_url) if settings.broker_url.startswith("redis") else None

    def wait_room() -> None:
        # backpressure as for the dispatcher: the WARC is read no faster than the process stage takes pages
        since = time.monotonic()
        while queue is not None and (depth := queue.llen(PROCESS_QUEUE_NAME)) > settings.process_queue_max:
            if stop:
                raise _Interrupted
            if time.monotonic() - since > 30:
                _say(f"warc: waiting for the process queue ({depth} pages) to drain: are process workers up?")
                since = time.monotonic()
            time.sleep(0.2)
        if stop:
            raise _Interrupted

    kwargs: dict[str, Any] = {} if result is None else {"batch": result.batch}
    ingest = WarcIngest(
        state_from_settings(settings),
        publish,
        max_bytes=settings.max_bytes,
        force=force,
        max_url_length=settings.max_url_length,
        strip_params=tracking_params(settings),
        fetcher=Fetcher.from_settings(settings),
        wait_room=wait_room,
        collect_ids=collect_ids,
        **kwargs,
    )
    try:
        done = ingest.submit(itertools.chain(warcs, iter_warc_list(warc_lists)))
    except (redis.RedisError, BrokerUnavailable) as exc:
        _say(f"error: state store or broker unreachable: {exc}")
        raise SystemExit(EXIT_BROKER) from None
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        app.close()
    problems = {k: v for k, v in ingest.counts.items() if ":" in k}
    _say(
        f"warc: {ingest.counts['pages']} pages, {ingest.counts['accepted']} queued for processing, "
        f"{ingest.counts['duplicates']} already seen, {ingest.counts['adopted']} already pending"
        + (", " + ", ".join(f"{k} {v}" for k, v in sorted(problems.items())) if problems else "")
    )
    if result is None:
        return done
    for name in ("submitted", "accepted", "adopted", "duplicates", "rejected_total"):
        setattr(result, name, getattr(result, name) + getattr(done, name))
    return result


PROCESS_QUEUE_NAME = "process"
"""The process stage's queue (``worker.celery_app.PROCESS_QUEUE``, not imported: that module builds the
workers' app)."""


def _process_publisher(settings: Settings) -> tuple[Any, Callable[[list[dict[str, Any]]], None]]:
    """A small Celery app on the broker that publishes ``ingest.process`` tasks by name."""
    from celery import Celery
    from kombu import Exchange, Queue

    app = Celery("ingest-warc", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_queues=[
            Queue(
                PROCESS_QUEUE_NAME,
                Exchange(PROCESS_QUEUE_NAME, type="direct"),
                routing_key=PROCESS_QUEUE_NAME,
            )
        ],
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
    )

    def publish(jobs: list[dict[str, Any]]) -> None:
        with app.producer_or_acquire() as producer:
            for job in jobs:
                app.send_task(
                    "ingest.process",
                    args=(job,),
                    queue=PROCESS_QUEUE_NAME,
                    producer=producer,
                    argsrepr=f"({job['url']!r},)",
                )

    return app, publish


# -- worker ------------------------------------------------------------------------------------------------


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
    """Fetch threads and process-pool size; by default one process per CPU this process may use (the
    container's quota and affinity, not the host's core count)."""
    from ingest_core.cpus import available_cpus

    process = concurrency or settings.process_concurrency or available_cpus()
    return fetch_concurrency or settings.fetch_concurrency, process


def start_workers(cmds: list[list[str]], log_dir: Path | None = None) -> list[subprocess.Popen]:
    """Start worker processes in their own session: a Ctrl-C at the terminal reaches only us, and we stop
    them warmly."""
    procs = []
    for cmd in cmds:
        out: Any = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            name = cmd[cmd.index("-Q") + 1]
            out = open(log_dir / f"worker-{name}.log", "ab")  # noqa: SIM115 - lives as long as the worker
        procs.append(
            subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
            )
        )
    return procs


def stop_workers(procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    """Warm shutdown (SIGTERM: finish the task in hand), then SIGKILL what is left after ``timeout``."""
    for p in procs:
        if p.poll() is None:
            with suppress(ProcessLookupError):
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
@click.option("-l", "--loglevel", default="INFO", show_default=True, help="DEBUG, INFO, WARNING, ERROR.")
@click.pass_context
def worker(
    ctx: click.Context, queues: str, concurrency: int | None, fetch_concurrency: int | None, loglevel: str
) -> None:
    """Start workers: a threads pool for ``fetch`` (with the dispatcher), a prefork pool for ``process``."""
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(wanted) - {"fetch", "process"}
    if unknown or not wanted:
        raise click.UsageError(f"unknown queue(s): {', '.join(sorted(unknown)) or '(none)'}")
    settings = broker_settings(ctx)
    fetch_c, process_c = _concurrencies(settings, concurrency, fetch_concurrency)
    procs = start_workers(
        worker_commands(wanted, fetch_concurrency=fetch_c, process_concurrency=process_c, loglevel=loglevel)
    )
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while all(p.poll() is None for p in procs) and not stopping:
            time.sleep(0.2)
    finally:
        stop_workers(procs)
    codes = [p.returncode for p in procs]
    raise SystemExit(0 if stopping or not any(codes) else max(abs(c or 0) for c in codes))


# -- run ---------------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


@main.command()
@click.argument("urls", nargs=-1)
@click.option("-f", "--file", "files", multiple=True, help="File of URLs, one a line ('-' for stdin).")
@source_options
@click.option("--force", is_flag=True, help="Fetch URLs again even if they were stored or are pending.")
@click.option("--warc", "warcs", multiple=True, help="WARC/ARC file (path or http(s) URL); repeatable.")
@click.option(
    "--warc-list", "warc_lists", multiple=True, help="File of WARC paths/URLs, one a line (.gz ok)."
)
@click.option("--concurrency", "-c", type=int, default=None, help="Processes of the process worker.")
@click.option("--fetch-concurrency", type=int, default=None, help="Threads of the fetch worker.")
@click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")
@click.option("-o", "--output", default=None, help="Also write this run's records to FILE ('-': stdout).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.pass_context
def run(
    ctx: click.Context,
    urls: tuple[str, ...],
    files: tuple[str, ...],
    force: bool,
    warcs: tuple[str, ...],
    warc_lists: tuple[str, ...],
    concurrency: int | None,
    fetch_concurrency: int | None,
    timeout: float | None,
    output: str | None,
    as_json: bool,
    **sources: tuple[str, ...],
) -> None:
    """All in one: broker (embedded unless configured), local workers, submit, wait, summary.

    Ctrl-C stops the workers cleanly and prints the summary so far; the same command again finishes what
    is left (nothing fetched twice). Exit: 0 nothing of this run pending, 3 broker unreachable, 4 timed
    out with URLs pending, 130 interrupted with URLs pending."""
    url_sources = bool(urls or files or any(sources.values()))
    if not url_sources and not warcs and not warc_lists:
        raise click.UsageError("give URLs, -f FILE, --feed, --sitemap, --feeds-file, --warc or --warc-list")
    if output == "-" and as_json:
        raise click.UsageError("-o - and --json both write to stdout: choose one")
    from ingest_core.state import state_from_settings

    settings = broker_settings(ctx)
    state = state_from_settings(settings)
    fetch_c, process_c = _concurrencies(settings, concurrency, fetch_concurrency)
    log_dir = Path(settings.data_dir) / "logs"
    stop: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if stop:  # a second Ctrl-C: give up waiting at once (workers still stop warmly)
            raise KeyboardInterrupt
        stop.append(signal.Signals(signum).name)
        _say(f"{stop[0]}: stopping the workers after the pages in hand; run the same command to resume")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    before = _fleet_pending(state)
    procs = start_workers(
        worker_commands(
            ["fetch", "process"], fetch_concurrency=fetch_c, process_concurrency=process_c, loglevel="WARNING"
        ),
        log_dir,
    )
    summary: dict[str, Any] = {}
    result: Any = None
    ids: set[str] | None = set() if output else None
    reason_end = "done"
    try:

        def progress(r: Any) -> None:
            if stop:
                raise _Interrupted

        try:
            if url_sources:
                result, _web = _submit(
                    urls, files, force, settings, on_progress=progress, collect_ids=ids, **sources
                )
            if warcs or warc_lists:
                result = _submit_warcs(settings, warcs, warc_lists, force, result, ids, stop)
        except _Interrupted:
            result = None
        if result is not None:
            if result.adopted:
                _say(f"{result.adopted} URLs of this input were pending from an earlier run: finishing them")
            others = max(0, before - result.adopted)
            if others:
                _say(f"{others} other URLs of earlier runs are pending in this data directory; they go too")
            summary, reason_end = _wait(result.batch, procs, timeout, state, stop, t0)
    except KeyboardInterrupt:
        reason_end = "interrupted"
    finally:
        stop_workers(procs)
        from worker.runner import storage_from_settings

        # opening the store publishes parts of killed workers (JSONL) or uploads a left-over spool (S3)
        storage_from_settings(settings).close()
    if result is None:
        _say("interrupted while submitting; run the same command again to go on")
        raise SystemExit(EXIT_INTERRUPTED)
    from ingest_core.state import summarize

    summary = summarize(state.counters(result.batch))
    elapsed = time.monotonic() - t0
    storage = settings.storage_url.removeprefix("file://")
    failures_path = Path(settings.data_dir) / "failures.jsonl"
    n_failures = _write_failures(state, result.batch, failures_path)
    summary.update(
        {
            "batch": result.batch,
            "seconds": round(elapsed, 2),
            "docs_per_second": round(summary.get("stored", 0) / elapsed, 2) if elapsed else 0.0,
            "records": storage if "://" in storage else str(Path(storage).resolve()),
            "failures_file": str(failures_path.resolve()),
            "broker": settings.broker_url,
            "earlier_pending": max(0, before - result.adopted),
            "resumed": result.adopted,
            "examples": _examples(state, result.batch),
            "limit": _limiting_factor(state, settings, summary, elapsed),
            "ended": reason_end if not stop else "interrupted",
        }
    )
    if output:
        _write_output(settings, ids or set(), output)
    if as_json:
        click.echo(json.dumps(summary))
    _print_summary(summary, title=f"ingest run (batch {result.batch})")
    if n_failures:
        _say(
            f"{n_failures} URLs did not end stored: {failures_path} "
            f"(or: ingest failures --batch {result.batch})"
        )
    if summary.get("pending"):
        if stop or reason_end == "interrupted":
            _say(f"{summary['pending']} URLs still pending: run the same command again to finish them")
            raise SystemExit(EXIT_INTERRUPTED)
        _say(
            f"{summary['pending']} URLs still pending ({reason_end}); `ingest cancel --batch {result.batch}`"
        )
        raise SystemExit(EXIT_PENDING)


def _fleet_pending(state: Any) -> int:
    from ingest_core.state import summarize

    return max(0, int(summarize(state.counters())["pending"]))


def _wait(
    batch: str,
    procs: list[subprocess.Popen],
    timeout: float | None,
    state: Any,
    stop: list[str],
    t0: float,
) -> tuple[dict, str]:
    """Wait until every URL of ``batch`` is terminal; progress on stderr (a bar on a terminal, else a line
    every 5 seconds). Returns the summary and why the wait ended."""
    from ingest_core.state import summarize

    deadline = time.monotonic() + timeout if timeout else None
    tty = sys.stderr.isatty()
    last_line = 0.0
    rate = _Rate()
    s: dict[str, Any] = {}
    while True:
        s = summarize(state.counters(batch))
        done = s["submitted"] - s["pending"]
        rate.add(done)
        now = time.monotonic()
        if s["pending"] <= 0:
            why = "done"
            break
        if stop:
            why = "interrupted"
            break
        if any(p.poll() is not None for p in procs):
            _say("a worker exited early; see the logs in the data directory (logs/)")
            why = "a worker exited"
            break
        if deadline and now > deadline:
            _say(f"timed out with {s['pending']} URLs of this run pending")
            why = "timed out"
            break
        if tty or now - last_line >= 5.0:
            line = _progress_line(s, done, rate, state)
            if tty:
                console.print(f"\r{line}\x1b[K", end="", markup=False)
            else:
                _say(line)
            last_line = now
        time.sleep(0.2)
    if tty:
        console.print("")
    return s, why


class _Rate:
    """URLs ended per second over the last 30 seconds."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def add(self, done: int) -> None:
        now = time.monotonic()
        self.points.append((now, done))
        while len(self.points) > 2 and now - self.points[0][0] > 30:
            self.points.pop(0)

    def per_second(self) -> float:
        if len(self.points) < 2:
            return 0.0
        (t1, d1), (t2, d2) = self.points[0], self.points[-1]
        return (d2 - d1) / (t2 - t1) if t2 > t1 else 0.0


def _progress_line(s: dict[str, Any], done: int, rate: _Rate, state: Any) -> str:
    per_s = rate.per_second()
    eta = f"eta {_duration(s['pending'] / per_s)}" if per_s > 0 else "eta ?"
    line = (
        f"ingest {done}/{s['submitted']}  stored {s['stored']} dup {s['duplicate']} skip {s['skipped']} "
        f"fail {s['failed']}  {per_s:.1f}/s {eta}"
    )
    why = _waiting_on(state)
    return f"{line}  ({why})" if why else line


def _waiting_on(state: Any) -> str:
    """What most pending URLs wait for: per-host politeness, backpressure, retries."""
    try:
        f = state.frontier.stats(top=3)
    except Exception:
        return ""
    if f["paused"]:
        return f"dispatch paused: {f['paused']}"
    if f["waiting"] and f["hosts_ready"] == 0 and f["busiest"]:
        hosts = f["hosts"]
        interval = state.frontier.host_interval
        per = f"at {1 / interval:g} req/s" if interval > 0 else ""
        return f"waiting on {hosts} host{'s' if hosts != 1 else ''} {per}: {f['waiting']} URLs".replace(
            "  ", " "
        )
    if f["retrying"]:
        return f"{f['retrying']} URLs backing off after transient errors"
    return ""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _limiting_factor(state: Any, settings: Settings, s: dict[str, Any], elapsed: float) -> str:
    """One line naming what bounded the run's speed (shown under the summary)."""
    f = state.frontier.stats(top=1)
    ended = s["submitted"] - s["pending"]
    if ended == 0 or elapsed <= 0:
        return ""
    hosts = max(1, f["hosts"]) if s["pending"] else None
    interval = settings.host_interval
    if interval > 0 and hosts is None:
        # rate per host bounded by the interval: a run at about that rate was politeness-bound
        per_host_max = 1 / interval
        if ended / elapsed <= per_host_max * 1.2 and ended > 5:
            return (
                f"per-host politeness: one request per {interval:g}s per host "
                "(INGEST_HOST_INTERVAL; raise it only for sites you own)"
            )
    if f["paused"]:
        return f"backpressure: {f['paused']}"
    return ""


def _examples(state: Any, batch: str, per_reason: int = 3) -> dict[str, list[str]]:
    """A few example URLs per failure or skip reason of this batch."""
    out: dict[str, list[str]] = {}
    for e in state.failures(count=5000, batch=batch):
        key = f"{e.get('state')}:{e.get('reason')}"
        urls = out.setdefault(key, [])
        if len(urls) < per_reason and e.get("url") not in urls:
            urls.append(e.get("url"))
    return out


def _write_failures(state: Any, batch: str, path: Path) -> int:
    """``failures.jsonl``: one line per URL of ``batch`` that did not end stored (newest end wins)."""
    dead = {e["id"]: e for e in state.dead_letters() if e.get("batch") == batch}
    seen: set[str] = set()
    lines = []
    for e in state.failures(count=1_000_000, batch=batch):
        key = e.get("id") or e.get("url")
        if key in seen:
            continue
        seen.add(key)
        lines.append(
            {
                "url": e.get("url"),
                "state": e.get("state"),
                "reason": e.get("reason"),
                "detail": e.get("detail", ""),
                "attempts": dead.get(e.get("id"), {}).get("attempts", 1),
                "at": e.get("at"),
                "batch": batch,
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return len(lines)


def _write_output(settings: Settings, ids: set[str], output: str) -> None:
    """This run's records (each id once, the newest copy) as JSONL to ``output``."""
    from worker.runner import storage_from_settings
    from worker.storage import latest_by_id

    store = storage_from_settings(settings)
    out: IO[str] = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for record in latest_by_id(store):
            if record.get("id") in ids:
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
        store.close()


def _print_summary(s: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("state")
    table.add_column("count", justify="right")
    table.add_column("reasons")
    for state in ("stored", "duplicate", "skipped", "failed", "pending"):
        reasons = s.get(f"{state}_reasons", {})
        table.add_row(state, str(s.get(state, 0)), ", ".join(f"{k}: {v}" for k, v in reasons.items()))
    console.print(table)
    for key, urls in (s.get("examples") or {}).items():
        _say(f"  {key}: " + ", ".join(urls))
    if "seconds" in s:
        _say(f"{s.get('submitted', 0)} URLs in {s['seconds']} s, {s.get('docs_per_second', 0)} docs/s")
    if s.get("records"):
        _say(f"records in {s['records']}")
    if s.get("limit"):
        _say(f"limited by {s['limit']}")
    if s.get("resumed"):
        _say(f"{s['resumed']} URLs were resumed from an earlier run")
    if s.get("earlier_pending"):
        _say(f"{s['earlier_pending']} other URLs of earlier runs were pending when this run started")


# -- stats, failures, cancel, extract ------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--batch", default=None, help="Counters of one submission batch only.")
@click.option("--watch", is_flag=True, help="Live table with rates, redrawn every --interval seconds.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between redraws.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool, batch: str | None, watch: bool, interval: float) -> None:
    """The fleet's state: terminal states by reason, the frontier, queue depths (``--batch``: one batch)."""
    import redis
    from kombu.exceptions import OperationalError

    from ingest_core.state import state_from_settings, summarize
    from worker.ops.queues import queue_depths

    settings = broker_settings(ctx)
    state = state_from_settings(settings)
    if watch:
        from worker.ops.watch import watch as watch_live

        watch_live(state, settings.broker_url, batch=batch, interval=interval)
        return
    try:
        if batch and not state.r.exists(state.key("batch", batch)):
            raise click.ClickException(f"no batch {batch!r} (batches are kept {settings.batch_ttl} s)")
        summary = summarize(state.counters(batch))
        summary["queues"] = queue_depths(settings.broker_url)  # Redis or AMQP
        summary["frontier"] = state.frontier.stats()
    except (redis.RedisError, OSError, OperationalError) as exc:
        _say(f"error: broker or state store unreachable: {exc}")
        raise SystemExit(EXIT_BROKER) from None
    if as_json:
        click.echo(json.dumps(summary))
        return
    _print_summary(summary, title=f"batch {batch}" if batch else "fleet")
    q = summary["queues"]
    _say("queues: " + ", ".join(f"{k} {v}" for k, v in q.items()))
    f = summary["frontier"]
    _say(
        f"frontier: {f['waiting']} waiting on {f['hosts']} hosts ({f['hosts_ready']} ready now), "
        f"{f['fetching']} fetching, {f['processing']} fetched and not yet processed, "
        f"{f['retrying']} backing off" + (f"; dispatch paused: {f['paused']}" if f["paused"] else "")
    )
    for h in f["busiest"]:
        _say(f"  {h['host']}: {h['waiting']} waiting, next slot in {h['next_in']} s")


@main.command()
@click.option("--reason", default=None, help="Only this reason code.")
@click.option("--batch", default=None, help="Only URLs of this submission batch.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--dead", is_flag=True, help="One line per URL still failed: attempts, last reason and time.")
@click.pass_context
def failures(
    ctx: click.Context, reason: str | None, batch: str | None, limit: int, as_json: bool, dead: bool
) -> None:
    """The newest skipped and failed URLs, with their reasons (``--dead``: failed URLs to retry)."""
    from ingest_core.state import state_from_settings

    if dead:
        from worker.ops.deadletters import print_dead_letters

        print_dead_letters(ctx, reason, limit, as_json)
        return
    state = state_from_settings(broker_settings(ctx))
    for e in state.failures(limit, reason, batch=batch):
        if as_json:
            click.echo(json.dumps(e))
        else:
            click.echo(f"{e['state']:8} {e['reason']:22} {e['url']}  {e.get('detail', '')}")


@main.command()
@click.option("--batch", default=None, help="Cancel the pending URLs of this batch.")
@click.option("--all", "everything", is_flag=True, help="Cancel every pending URL.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cancel(ctx: click.Context, batch: str | None, everything: bool, as_json: bool) -> None:
    """End pending URLs as ``skipped:cancelled`` (counts still add up); their queued tasks do nothing.

    Use this, not ``celery purge``: a purge drops messages but leaves the URLs pending."""
    from ingest_core.state import state_from_settings

    if bool(batch) == everything:
        raise click.UsageError("give --batch ID or --all")
    state = state_from_settings(broker_settings(ctx))
    if batch and not state.r.exists(state.key("batch", batch)):
        raise click.ClickException(f"no batch {batch!r}")
    n = state.cancel(batch=batch)
    if everything:
        from worker.ops.queues import purge_queues

        purge_queues(settings_of(ctx).broker_url or broker_settings(ctx).broker_url)
    if as_json:
        click.echo(json.dumps({"cancelled": n, "batch": batch}))
    else:
        _say(f"{n} pending URLs cancelled (skipped:cancelled)")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--url", default=None, help="The page's URL (for links, metadata and the record).")
@click.option("-o", "--output", default="-", show_default=True, help="JSONL file for the records.")
def extract(files: tuple[str, ...], url: str | None, output: str) -> None:
    """Offline: extract, clean and enrich local HTML files; one JSON record per line.

    Records only go to the output; a file that gives no record is reported on stderr, one line each, and
    the exit status is 1 when any file gave no record."""
    from ingest_core.canonical import url_id
    from ingest_core.errors import Skip
    from worker.pipeline.clean import Cleaner
    from worker.pipeline.decode import decode_html
    from worker.pipeline.enrich import Enricher
    from worker.pipeline.extract import Extractor
    from worker.record import utc_now_iso
    from worker.runner import Job, build_record

    settings = Settings.from_env()
    extractor, cleaner, enricher = Extractor(max_bytes=settings.max_bytes), Cleaner(), Enricher()
    out: IO[str] = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
    bad = 0
    try:
        for path in files:
            page_url = url or Path(path).resolve().as_uri()
            job = Job(url=page_url, id=url_id(page_url), token="", batch="", source="file")
            try:
                raw = gzip.open(path).read() if path.endswith(".gz") else Path(path).read_bytes()
                html = decode_html(raw)  # as the fetcher decodes: BOM, <meta charset>, detection
            except (Skip, OSError, EOFError) as exc:
                bad += 1
                reason = exc.reason if isinstance(exc, Skip) else "decode_error"
                click.echo(f"skipped:{reason} {path}", err=True)
                continue
            doc = extractor.extract(html, page_url)
            if doc is None or not doc.text.strip():
                bad += 1
                click.echo(f"skipped:no_text {path}", err=True)
                continue
            record = build_record(
                job,
                cleaner.clean(doc),
                final_url=page_url,
                status=200 if url else None,
                fetched_at=utc_now_iso(),
                enricher=enricher,
            )
            if not url:  # a local file has no site: no domain, no HTTP status
                record["domain"] = record["registered_domain"] = None
            record["file"] = path
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if bad:
        raise SystemExit(1)


# -- commands defined elsewhere: one add_command line each, keep this block at the end ----------------------

from producers.cli import serve as serve_command  # noqa: E402
from producers.cli import watch as watch_command  # noqa: E402
from worker.ops.deadletters import retry_failed_command  # noqa: E402
from worker.ops.export import export_command  # noqa: E402
from worker.ops.flower import flower_command  # noqa: E402
from worker.ops.metrics import metrics_command  # noqa: E402

for _command in (
    retry_failed_command,
    export_command,
    flower_command,
    metrics_command,
    watch_command,
    serve_command,
):
    main.add_command(_command)

from worker.ops.health import health_command  # noqa: E402

main.add_command(health_command)

for _command in main.commands.values():
    with_common_options(_command)


def _iter_commands() -> Iterator[click.Command]:
    yield from main.commands.values()


if __name__ == "__main__":
    main()
