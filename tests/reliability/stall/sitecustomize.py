"""Test-only fault injection, loaded by Python at start when this folder is on PYTHONPATH.

With ``INGEST_TEST_STALL_DIR`` set, a process about to record as ``stored`` a URL whose id is listed in
``<dir>/armed`` (one a line) stops right there: it writes ``<dir>/stalled-<pid>-<url id>`` and sleeps.
The record is written, its terminal state is not: the test SIGKILLs the worker in exactly that window.
"""

import os

_DIR = os.environ.get("INGEST_TEST_STALL_DIR")

if _DIR:
    import time

    import ingest_core.state as _state

    _finish = _state.StateStore.finish

    def _stalling_finish(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        state = args[2] if len(args) > 2 else kwargs.get("state")
        url_id = args[0] if args else kwargs.get("url_id")
        try:
            with open(os.path.join(_DIR, "armed")) as fh:
                armed = set(fh.read().split())
        except FileNotFoundError:
            armed = set()
        if state == "stored" and url_id in armed:
            open(os.path.join(_DIR, f"stalled-{os.getpid()}-{url_id}"), "w").close()
            while True:
                time.sleep(60)
        return _finish(self, *args, **kwargs)

    _state.StateStore.finish = _stalling_finish
