"""``ingest export --to FILE.jsonl``: every record once (one line per id), from any storage backend."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click


@click.command("export")
@click.option("--to", "target", required=True, help="Output JSONL file ('-' for stdout).")
@click.pass_context
def export_command(ctx: click.Context, target: str) -> None:
    """Write every stored record once, the newest copy of each id, from INGEST_STORAGE_URL."""
    from worker.runner import storage_from_settings
    from worker.storage import export, read_problems

    storage = storage_from_settings(ctx.obj["settings"])
    try:
        if target == "-":
            n = export(storage, sys.stdout)
        else:
            # write beside the target, then rename: a reader never sees half an export
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    n = export(storage, out)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    finally:
        storage.close()
    problems = read_problems(storage)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    skipped = f" ({len(problems)} torn or unreadable lines skipped, listed above)" if problems else ""
    click.echo(f"exported {n} records to {target}{skipped}", err=True)
