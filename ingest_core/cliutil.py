"""What every ``ingest`` command needs from its click context: the settings, with a broker in hand.

Here, not in ``worker.cli``, so that the commands defined in ``producers`` and ``worker.ops`` share it
without importing the CLI module that imports them.
"""

from __future__ import annotations

import click

from ingest_core.embedded import BrokerNotFound, with_broker
from ingest_core.settings import Settings


def settings_of(ctx: click.Context) -> Settings:
    """The command's settings (defaults, file, environment, flags)."""
    return ctx.find_root().obj["settings"]


def broker_settings(ctx: click.Context) -> Settings:
    """The settings with a usable broker for as long as the command runs: the configured one, else the
    embedded Redis of the data directory (started when needed; its last user stops it)."""
    try:
        return ctx.with_resource(with_broker(settings_of(ctx)))
    except BrokerNotFound as exc:
        raise click.ClickException(str(exc)) from None
