"""CloudWatch Logs patch: the endpoint keeps a bounded tail of each log stream in memory.

Each patch targets moto 5.2.5 (pinned) and says why it exists.
"""

from __future__ import annotations

from typing import Any

from localcloud.servers.moto_patches.install import install

# The newest events of a log stream the endpoint keeps (GetLogEvents returns at most 10,000 per call).
EVENTS_KEPT_PER_STREAM = 10_000


def apply() -> None:
    _keep_the_newest_events()


def _keep_the_newest_events() -> None:
    """moto keeps every log event forever, ~600 bytes of its memory each. The runtime ships every invocation's
    lines (START, END, REPORT and the function's own) to the endpoint: at 1,000 readings/s that grew it by about
    0.5 GB a day. A stream keeps its newest events, as a retention setting would; the runtime also writes every
    line to .local/logs/lambda/ (size-bounded files)."""
    from moto.logs.models import LogStream

    put_log_events = LogStream.put_log_events

    def put_keeping_the_newest(self: LogStream, log_events: list[dict[str, Any]]) -> str:
        token = put_log_events(self, log_events)
        if len(self.events) > EVENTS_KEPT_PER_STREAM:
            del self.events[: len(self.events) - EVENTS_KEPT_PER_STREAM]
        return token

    install(LogStream, "put_log_events", put_keeping_the_newest)
