#!/usr/bin/env python3
"""The image's entrypoint: secrets from files into the environment, then ``exec ingest ARGS``.

- ``INGEST_<NAME>_FILE=/run/secrets/x`` sets ``INGEST_<NAME>`` to that file's content (one trailing newline
  dropped) unless ``INGEST_<NAME>`` is set: compose secrets instead of passwords in the environment, where
  ``docker inspect`` and every child process see them.
- ``REDIS_PASSWORD_FILE`` with ``REDIS_ADDRESS`` (``host:port/db``, default ``redis:6379/0``) builds
  ``INGEST_BROKER_URL`` with the password percent-encoded, so ``/``, ``#``, ``@`` or ``%41`` in a password
  reach Redis unchanged (kombu and redis-py decode it), unless ``INGEST_BROKER_URL`` is set.

Healthchecks run through this script too (``ingest-entrypoint health``), so they see the same settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from urllib.parse import quote

DEFAULT_REDIS_ADDRESS = "redis:6379/0"
"""Where the compose file's Redis listens, and the database the fleet uses."""


def read_secret(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        value = fh.read()
    return value[:-1] if value.endswith("\n") else value


def broker_url(password: str, address: str = DEFAULT_REDIS_ADDRESS) -> str:
    """``redis://:PASSWORD@ADDRESS`` with every reserved character of the password percent-encoded."""
    return f"redis://:{quote(password, safe='')}@{address}"


def apply_secrets(env: MutableMapping[str, str]) -> None:
    """Fill ``INGEST_*`` variables from their ``*_FILE`` companions and the Redis password file, in place."""
    for name in [n for n in env if n.startswith("INGEST_") and n.endswith("_FILE")]:
        target = name.removesuffix("_FILE")
        if not env.get(target) and env[name]:
            env[target] = read_secret(env[name])
    if not env.get("INGEST_BROKER_URL") and env.get("REDIS_PASSWORD_FILE"):
        env["INGEST_BROKER_URL"] = broker_url(
            read_secret(env["REDIS_PASSWORD_FILE"]), env.get("REDIS_ADDRESS") or DEFAULT_REDIS_ADDRESS
        )


def main(argv: list[str]) -> None:
    try:
        apply_secrets(os.environ)
    except OSError as exc:
        sys.exit(f"ingest-entrypoint: cannot read a secret: {exc}")
    os.execvp("ingest", ["ingest", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
