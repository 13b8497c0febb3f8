"""The dicts ``Server.stats()`` and ``Server.health()`` return, typed.

Plain dicts at runtime; for type checkers, ``TypedDict``s listing every key
(the core's ``Stats`` and ``Health``, src/stats.rs).
"""

from typing import Literal, TypedDict


class Stats(TypedDict):
    """A snapshot of a node's counters, every value an ``int``."""

    connections: int
    """Connections open now."""
    groups: int
    """Groups with at least one local member now."""
    connections_opened: int
    """Connections accepted since start."""
    connections_refused: int
    """Connections refused (connection limit, origin, host approval)."""
    messages_in: int
    """Client messages received."""
    bytes_in: int
    """Bytes of client messages received."""
    messages_out: int
    """Messages queued for clients (each member of a fan-out counts)."""
    bytes_out: int
    """Bytes of those messages."""
    dropped_messages: int
    """Messages dropped for slow consumers (the ``drop`` policy)."""
    slow_consumer_closes: int
    """Connections closed for being too slow (the ``close`` policy)."""
    heartbeat_timeouts: int
    """Connections closed for not answering pings."""
    bus_reconnects: int
    """Times the bus lost its connection and made it again."""
    bus_dropped_publishes: int
    """Publishes to other nodes dropped (bus down, or its bound reached)."""
    bus_connected: int
    """1 while the bus reaches the other nodes (always 1 without a bus)."""
    bus_connect_attempts: int
    """Connections to the bus tried, successful or not."""
    bus_auth_failures: int
    """Times the channel server refused this node's secret."""
    bus_dropped_events: int
    """Messages from the bus dropped: the node had not taken earlier ones."""
    host_dropped_events: int
    """Events for the host dropped because its queue was full."""
    tls_handshake_failures: int
    """TLS handshakes that failed (plain ws:// to a TLS port included)."""
    channel_refused: int
    """Embedded channel server: connections closed for a bad body (a PHP
    serialized object, say) or a missing or wrong secret."""
    channel_queue_dropped: int
    """Embedded channel server: work-queue items dropped over the bound."""
    channel_undeliverable: int
    """Embedded channel server: deliveries with no form in the subscriber's
    dialect (a non-UTF-8 PHP string for a JSON client)."""
    presence_resyncs: int
    """Snapshots of another node's presence asked for after a gap."""
    presence_dropped_entries: int
    """Other nodes' presence entries dropped (over the bound)."""
    presence_expired_nodes: int
    """Other nodes' presence removed at the end of their lease."""
    presence_coalesced_events: int
    """Presence events replaced by one ``presence_changed`` event."""
    remote_actions_failed: int
    """Actions from other nodes for a connection not open here."""
    history_bytes: int
    """Bytes of group history kept now (0 with history off)."""
    history_evictions: int
    """History messages evicted by the node's byte bound."""
    history_recovered: int
    """Joins with ``since`` that got every missed message."""
    history_not_recovered: int
    """Joins with ``since`` answered ``recovered: false``."""


class _HealthKeys(TypedDict):
    status: Literal["ok", "unavailable"]
    """``"ok"``, or ``"unavailable"`` (bus down, or the node stopped)."""
    bus: Literal["none", "connected", "disconnected"]
    """``"none"`` (a single node), ``"connected"`` or ``"disconnected"``."""
    connections: int
    """Connections open now."""


class Health(_HealthKeys, total=False):
    """Whether a node serves and reaches its cluster, as ``GET /health``."""

    reason: str
    """Why the node is unavailable; absent when it is ok."""


class Presence(TypedDict):
    """Who is in a group across the cluster (``Server.presence``)."""

    connections: int
    """Connections in the group, with or without a uid."""
    users: int
    """Distinct uids among them."""
    uids: list[str]
    """Those uids, sorted, at most ``max_uids``."""
    truncated: bool
    """Whether ``uids`` was cut to ``max_uids``."""


class ClusterStats(TypedDict):
    """The cluster as one node sees it (``Server.cluster_stats``)."""

    nodes: int
    """Nodes whose presence this node holds, itself included."""
    connections: int
    """Open connections."""
    users: int
    """Distinct uids bound to a connection."""
    groups: int
    """Groups with at least one member."""
