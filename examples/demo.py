"""`make demo`: serve the bundled example pages on 127.0.0.1 and ingest them with `ingest run`.

Uses the embedded Redis unless INGEST_BROKER_URL is set. Exits non-zero unless every page was stored.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGES = Path(__file__).resolve().parent / "pages"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    handler = functools.partial(_Quiet, directory=str(PAGES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    pages = sorted(PAGES.glob("*.html"))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("".join(f"{base}/{p.name}\n" for p in pages))
    print(f"serving {len(pages)} example pages at {base}")
    # the pages live on loopback: allow it for this run only (the default refuses private networks)
    env = {**os.environ, "INGEST_ALLOW_PRIVATE_NETWORKS": "true"}
    cmd = [sys.executable, "-m", "worker.cli", "run", "-f", fh.name, "--force", "--json"]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    server.shutdown()
    if proc.returncode != 0:
        print(f"ingest run failed with exit code {proc.returncode}", file=sys.stderr)
        return proc.returncode
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{summary['stored']} of {len(pages)} pages stored; records are in {summary['records']}")
    return 0 if summary["stored"] == len(pages) else 1


if __name__ == "__main__":
    raise SystemExit(main())
