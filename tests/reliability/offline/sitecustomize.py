"""Test-only fault injection, loaded by Python at start when this folder is on PYTHONPATH.

With ``INGEST_TEST_OFFLINE_SUFFIX`` set (e.g. ``.offline.test``), every name ending with it fails to resolve
the way it does on a machine with no network: ``gaierror(EAI_AGAIN, "Temporary failure in name
resolution")``. Other names and addresses resolve normally.
"""

import os

_SUFFIX = os.environ.get("INGEST_TEST_OFFLINE_SUFFIX")

if _SUFFIX:
    import socket

    _real = socket.getaddrinfo

    def _offline(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(host, str) and host.rstrip(".").endswith(_SUFFIX):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return _real(host, *args, **kwargs)

    socket.getaddrinfo = _offline
