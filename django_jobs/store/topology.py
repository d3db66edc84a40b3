"""Which Redis deployment django-jobs talks to, and its clients: one server (``redis://``,
``rediss://``, ``unix://``: :mod:`.connection` makes those), a Redis Cluster
(``redis+cluster://``) or a master watched by Sentinel (``redis+sentinel://``).

The URL forms, with ``rediss+`` for TLS (to the Redis nodes, and to the sentinels)::

    redis+cluster://[[user]:password@]host:port[,host:port...][/0][?option=value...]
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?...]

The hosts are a cluster's startup nodes (any of its nodes: the client discovers the others and
which owns which slot) or the sentinels. The user and password are those of the Redis nodes;
``sentinel_username`` and ``sentinel_password`` in the query are those of the sentinels.

A django-redis cache reused through ``CONNECTION`` may hold a cluster or a Sentinel client: its
sync client is used as it is, and :func:`from_client` describes it for the asyncio client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

# scheme: (kind, TLS)
SCHEMES = {
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}

# The query options these URLs take, with how each value is read. Timeouts apply to the
# sentinels too; the sentinel_ ones only to them.
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": float,
    "max_connections": int,
    "client_name": str,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_check_hostname": lambda v: v.lower() in ("1", "true", "yes", "on"),
}
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
# What the sentinels' connections share with the Redis nodes' ones.
_SHARED = ("socket_timeout", "socket_connect_timeout", "ssl", "ssl_cert_reqs", "ssl_ca_certs")
_SHARED += ("ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
# What a redis-py connection pool's keyword arguments may carry over to a client of another
# kind (sync to asyncio): no classes, callbacks or parsers of the sync one.
_PORTABLE = ("username", "password", "db", "client_name", "health_check_interval")
_PORTABLE += ("socket_timeout", "socket_connect_timeout", "socket_keepalive")


@dataclass(frozen=True)
class Topology:
    """A cluster or a Sentinel deployment: where to start, and how to connect."""

    kind: str  # "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...]  # the startup nodes, or the sentinels
    service: str = ""  # the Sentinel service (master) name
    options: dict[str, Any] = field(default_factory=dict)  # for the Redis nodes
    sentinel_options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_cluster(self) -> bool:
        return self.kind == "cluster"


def is_topology_url(url: str) -> bool:
    """Whether ``url`` names a cluster or a Sentinel deployment (see :func:`parse`)."""
    return url.partition("://")[0].lower() in SCHEMES


def _node(text: str, default_port: int) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        host, port = text.strip(), str(default_port)
    host = host.strip("[]")  # an IPv6 address is written in brackets
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad host:port {text.strip()!r}")
    return host, int(port)


def parse(url: str, defaults: dict[str, float] | None = None) -> Topology:
    """The deployment a ``redis+cluster://`` or ``redis+sentinel://`` URL names; ``ValueError``
    naming what is wrong (the caller redacts the URL's password from the message).

    ``defaults`` (the time-outs) apply unless the URL's query sets them.
    """
    scheme, _, rest = url.partition("://")
    kind, tls = SCHEMES[scheme.lower()]
    split = urlsplit(f"redis://{rest}")
    netloc = split.netloc.rpartition("@")[2]
    if not netloc:
        raise ValueError("no host:port given")
    nodes = tuple(
        _node(n, 26379 if kind == "sentinel" else 6379) for n in netloc.split(",") if n.strip()
    )
    options: dict[str, Any] = dict(defaults or {})
    if split.username:
        options["username"] = unquote(split.username)
    if split.password:
        options["password"] = unquote(split.password)
    sentinel: dict[str, Any] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        if name in _SENTINEL_OPTIONS:
            sentinel[name.removeprefix("sentinel_")] = unquote(value)
        elif name in _OPTIONS:
            try:
                options[name] = _OPTIONS[name](value)
            except ValueError:
                raise ValueError(f"bad value for {name}: {value!r}") from None
        else:
            known = ", ".join(sorted((*_OPTIONS, *_SENTINEL_OPTIONS)))
            raise ValueError(f"unknown option {name!r} (known: {known})")
    if tls:
        options["ssl"] = True
    path = [p for p in split.path.split("/") if p]
    service = ""
    if kind == "cluster":
        if path not in ([], ["0"]):
            raise ValueError("a Redis Cluster has only database 0: no path, or /0")
    else:
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError("the path must be /service_name or /service_name/db")
        service = unquote(path[0])
        options["db"] = int(path[1]) if len(path) == 2 else 0
        sentinel.update({k: options[k] for k in _SHARED if k in options})
    return Topology(kind, nodes, service, options, sentinel)


def sync_client(topology: Topology) -> redis.Redis | redis.cluster.RedisCluster:
    """The sync client of ``topology``: a ``RedisCluster``, or the Sentinel master's client
    (whose pool asks the sentinels for the master's address at each new connection and drops
    the connections to a master that was demoted)."""
    if topology.is_cluster:
        startup = [redis.cluster.ClusterNode(host, port) for host, port in topology.nodes]
        return redis.cluster.RedisCluster(startup_nodes=startup, **topology.options)
    sentinels = redis.sentinel.Sentinel(
        list(topology.nodes), sentinel_kwargs=_asked_once(topology), **topology.options
    )
    return sentinels.master_for(topology.service)


def _asked_once(topology: Topology) -> dict[str, Any]:
    """The sentinels' connection options: each asked once per discovery, without redis-py's
    retries and pauses (newer redis-py retries 3 times, seconds apart): the next sentinel is
    the retry, and the caller waits and asks again while none answers."""
    return {**topology.sentinel_options, "retry": Retry(NoBackoff(), 0)}


def async_client(topology: Topology) -> Any:
    """The asyncio twin of :func:`sync_client`."""
    if topology.is_cluster:
        startup = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in topology.nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=startup, **topology.options)
    options = {**topology.sentinel_options, "retry": AsyncRetry(NoBackoff(), 0)}
    sentinels = redis.asyncio.sentinel.Sentinel(
        list(topology.nodes), sentinel_kwargs=options, **topology.options
    )
    return sentinels.master_for(topology.service)


def _portable(kwargs: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in kwargs.items() if k in _PORTABLE and v is not None}
    connection_class = kwargs.get("connection_class")
    if connection_class is not None and "SSL" in connection_class.__name__:
        options["ssl"] = True
        options.update({k: v for k, v in kwargs.items() if k.startswith("ssl_") and v})
    return options


def from_client(client: Any) -> Topology | None:
    """The cluster or Sentinel deployment of a sync client (django-redis's, reused through
    ``CONNECTION``), to make the asyncio client of the same; ``None`` for one server."""
    if isinstance(client, redis.cluster.RedisCluster):
        nodes = client.get_nodes()
        options = _portable(nodes[0].redis_connection.connection_pool.connection_kwargs)
        options.pop("db", None)
        return Topology("cluster", tuple((n.host, int(n.port)) for n in nodes), "", options)
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        manager = pool.sentinel_manager
        sentinels = manager.sentinels
        sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs if sentinels else {}
        addresses = [s.connection_pool.connection_kwargs for s in sentinels]
        nodes = tuple((a["host"], int(a["port"])) for a in addresses)
        options = _portable(pool.connection_kwargs)
        return Topology("sentinel", nodes, pool.service_name, options, _portable(sentinel_kwargs))
    return None


# Whether clients of a class are cluster clients: asked at every call, answered once per class
# (isinstance of redis-py's cluster classes is slow: their metaclass is typing's Protocol one).
_CLUSTER_CLASSES: dict[type, bool] = {}


def is_cluster_client(client: Any) -> bool:
    """Whether ``client`` is a cluster client, sync or asyncio."""
    kind = type(client)
    found = _CLUSTER_CLASSES.get(kind)
    if found is None:
        cluster = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
        found = _CLUSTER_CLASSES[kind] = isinstance(client, cluster)
    return found
