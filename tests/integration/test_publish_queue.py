"""The publish queue against a real Redis: order, merging, shedding, retry after a stall."""

from __future__ import annotations

import json

from detector.publish_queue import PublishQueue
from detector.records import ScoreRecord, StatusRecord
from detector.redis_keys import RedisKeys
from detector.redis_sink import RedisSink


def score(index: int) -> ScoreRecord:
    return ScoreRecord("s", index, None, None, "NO_FACE", capture_time=0.0, latency_ms=1.0)


def test_writes_land_in_order_and_status_changes_are_never_merged(redis_client):
    # given a queue whose thread is held up by a slow first write
    queue = PublishQueue(RedisSink(redis_client, RedisKeys(), 100), max_scores=3)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("deepfake:events")
    pubsub.get_message(timeout=1)
    with queue._cond:  # nothing is written while we hold the lock: everything queues up
        for status in ("running", "running", "stalled", "reconnecting", "running", "running"):
            queue.set_status(StatusRecord("s", status))
        for index in range(10):
            queue.publish_score(score(index))
    assert queue.flush(10)
    # then refreshes of one status merge, changes do not, and the oldest scores were shed
    events = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        events.append(json.loads(message["data"])["status"])
    assert events == ["running", "stalled", "reconnecting", "running"]
    assert queue.shed == 7
    assert [int(e[b"frame_index"]) for _, e in redis_client.xrange("deepfake:history:s")] == [7, 8, 9]
    queue.close()


def test_a_forget_then_a_new_status_keeps_the_new_one(redis_client):
    queue = PublishQueue(RedisSink(redis_client, RedisKeys(), 100))
    with queue._cond:
        queue.set_status(StatusRecord("s", "finished"))
        queue.forget_stream("s")
        queue.set_status(StatusRecord("s", "finished"))
    assert queue.flush(10)
    assert json.loads(redis_client.hget("deepfake:streams", "s"))["status"] == "finished"
    queue.close()
