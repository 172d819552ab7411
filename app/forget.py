"""``forget`` / ``clear``: take ended streams off the stream list, with their history.

They work on Redis directly, so they also clean up after a service that is gone (a replay's
streams, a crashed ``run``). A stream that a running service still reads is refused: detach it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from detector.errors import DetectorError
from detector.records import StatusRecord
from detector.redis_keys import RedisKeys
from detector.redis_sink import RedisSink
from detector.stream_status import TERMINAL_STATUSES

log = logging.getLogger(__name__)


def _statuses(client: redis.Redis, keys: RedisKeys) -> dict[str, str | None]:
    """Each listed stream's status; None for a record that cannot be read (it is listed all the
    same, so it can be forgotten)."""
    statuses: dict[str, str | None] = {}
    for key, raw in client.hgetall(keys.streams).items():
        stream_id = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        try:
            statuses[stream_id] = StatusRecord.from_redis(raw, stream_id).status
        except ValueError:
            statuses[stream_id] = None
    return statuses


def forget_streams(client: redis.Redis, keys: RedisKeys, stream_ids: Sequence[str]) -> list[str]:
    """Remove these streams from the list and delete their history, latest score, thumbnail.

    Returns:
        the ids removed, in order.
    Raises:
        DetectorError: an id is not listed, or a running service still reads it (nothing is
            removed then).
    """
    statuses = _statuses(client, keys)
    service_running = client.exists(keys.service) > 0
    for stream_id in stream_ids:
        if stream_id not in statuses:
            raise DetectorError(f"no stream with id {stream_id!r} (`deepfake-detector streams` "
                                "lists them)")
        status = statuses[stream_id]
        if service_running and status not in TERMINAL_STATUSES:
            raise DetectorError(f"stream {stream_id!r} is {status or 'running'}: "
                                f"`deepfake-detector detach {stream_id}` stops and removes it")
    sink = RedisSink(client, keys, history_maxlen=1)
    for stream_id in stream_ids:
        sink.forget_stream(stream_id)
    return list(stream_ids)


def clear_streams(client: redis.Redis, keys: RedisKeys) -> list[str]:
    """Remove every stream that has ended (finished, failed, stopped); with no service running,
    every stream (nothing reads them any more).

    Returns:
        the ids removed, sorted.
    """
    service_running = client.exists(keys.service) > 0
    ended = sorted(stream_id for stream_id, status in _statuses(client, keys).items()
                   if not service_running or status in TERMINAL_STATUSES)
    sink = RedisSink(client, keys, history_maxlen=1)
    for stream_id in ended:
        sink.forget_stream(stream_id)
    return ended
