"""Past one process (`cluster:`): worker processes, and the Redis that workers and nodes share state in.

`workers` proxy processes serve one listen address (`clickguard run --workers N` wins over
it; read at start). What must agree between them and between nodes — learned Thingbots,
continue grants, click trails, dashboard sessions and lock-outs, feed status — goes through
the Redis at `redis` (`--redis URL` wins over it), see `clickguard.cluster`. Without it one
worker is one node, on its own state; more workers without it get a private redis-server
on a unix socket in the state directory.
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, StrictInt

from clickguard.cluster import redacted as redacted  # the URL's form for logs, kept with the client
from clickguard.policy.sections import _Model
from clickguard.policy.yamlfile import describe

REDIS_SCHEMES = ("redis", "rediss", "unix")
MAX_WORKERS = 64


def parse_redis_url(value: object) -> str:
    """redis://[:PASSWORD@]HOST:PORT/DB, rediss://… (TLS) or unix:///PATH[?db=N], as redis-py reads them."""
    if isinstance(value, str) and value.strip() == value and value:
        try:
            parts = urllib.parse.urlsplit(value)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is not None and parts.scheme in REDIS_SCHEMES:
            if parts.scheme == "unix" and parts.path.startswith("/") and not parts.netloc:
                return value
            db = parts.path.lstrip("/")
            if parts.scheme != "unix" and parts.hostname and (port is None or port > 0) \
                    and (db == "" or (db.isascii() and db.isdigit())):
                return value
    raise ValueError("must be redis://HOST:PORT/DB (rediss:// for TLS, a password as "
                     f"redis://:PASSWORD@HOST…) or unix:///PATH (got {describe(value)})")


type RedisUrl = Annotated[str, PlainValidator(parse_redis_url)]


class ClusterConfig(_Model):
    """Worker processes and the Redis they (and other nodes) share state in."""

    workers: Annotated[StrictInt, Field(ge=1, le=MAX_WORKERS)] = 1
    redis: RedisUrl | None = None
    # Redis unreachable: "degraded" keeps /readyz at 200 with the reason in its JSON (every node
    # serves on its own state meanwhile); "not_ready" answers 503, for balancers that should drain.
    redis_down: Literal["degraded", "not_ready"] = "degraded"
