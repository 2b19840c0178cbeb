"""An endpoint's container logs from CloudWatch Logs, merged by time across its streams.

SageMaker writes each instance's container output to a stream of the log group
``/aws/sagemaker/Endpoints/{endpoint}`` (``AllTraffic/i-0abc…``). ``FilterLogEvents`` reads
all streams of the group at once; what it returns is sorted again by time here, so lines of
several instances interleave as they happened. Reads are bounded: at most ``limit`` events
(the latest ones) per read, and a follow polls every few seconds until it is interrupted.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from sagemaker_reranker.deploy.aws.session import Aws, DeployError

FOLLOW_SECONDS = 2.0
MAX_PAGES = 200  # ~1M events: a bound for a read, not a figure a window should reach


def log_group(endpoint: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint}"


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # milliseconds since the epoch
    stream: str
    message: str
    event_id: str

    @property
    def time(self) -> str:
        moment = datetime.fromtimestamp(self.timestamp / 1000, tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "stream": self.stream, "message": self.message}

    def line(self) -> str:
        return f"{self.time} {self.stream} {self.message.rstrip()}"


@dataclass
class Read:
    """One bounded read: the events, oldest first, and how many earlier ones were dropped."""

    events: list[LogEvent]
    dropped: int


class NoLogGroup(DeployError):
    """The endpoint has written no logs (yet), or there is no such endpoint."""


def read(aws: Aws, endpoint: str, start_ms: int, limit: int) -> Read:
    """The latest ``limit`` events from ``start_ms`` on, oldest first."""
    group = log_group(endpoint)
    # The service may return streams one after another: keep the latest by time, not order.
    kept: list[tuple[int, int, LogEvent]] = []
    seen = 0
    params: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    for _ in range(MAX_PAGES):
        try:
            page = aws.read("logs", "filter_log_events", **params)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise NoLogGroup(
                    f"no log group {group}: endpoint {endpoint} has written no logs yet "
                    "(or there is no such endpoint)"
                ) from None
            raise
        for event in page.get("events", []):
            seen += 1
            item = LogEvent(
                timestamp=int(event["timestamp"]),
                stream=event.get("logStreamName", "?"),
                message=event.get("message", ""),
                event_id=event.get("eventId", ""),
            )
            entry = (item.timestamp, seen, item)
            if len(kept) < limit:
                heapq.heappush(kept, entry)
            elif entry[0] >= kept[0][0]:
                heapq.heapreplace(kept, entry)
        token = page.get("nextToken")
        if not token:
            break
        params["nextToken"] = token
    events = [item for _, _, item in sorted(kept, key=lambda e: (e[0], e[2].stream, e[1]))]
    return Read(events, seen - len(events))


def follow(
    aws: Aws,
    endpoint: str,
    start_ms: int,
    limit: int,
    on_dropped: Callable[[int], None],
) -> Iterator[LogEvent]:
    """Events as they arrive, forever (the caller ends it, e.g. on Ctrl-C).

    Each poll asks from the newest timestamp seen; events of that same millisecond already
    shown are skipped by id. A missing log group is waited for (an endpoint being created
    writes its first lines minutes after the call).
    """
    since = start_ms
    shown_at_since: set[str] = set()
    waiting_noted = False
    while True:
        try:
            batch = read(aws, endpoint, since, limit)
        except NoLogGroup as missing:
            if not waiting_noted:
                aws.reporter.note(f"{missing}; waiting for it")
                waiting_noted = True
            batch = Read([], 0)
        if batch.dropped:
            on_dropped(batch.dropped)
        for event in batch.events:
            if event.timestamp == since and event.event_id in shown_at_since:
                continue
            if event.timestamp > since:
                since, shown_at_since = event.timestamp, set()
            shown_at_since.add(event.event_id)
            yield event
        time.sleep(FOLLOW_SECONDS)
