"""What a run sent: counts per kind, offline gaps, and (optionally) one JSON line per message.

Tests compare the pipeline's results with this; people read `summary()` and the progress lines."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from localcloud.tools.simulator.model import KINDS, LOST_OFFLINE, Message, OfflineSpan, Options

_SHORT = {"out_of_order": "ooo", "duplicate": "dup", "lost_offline": "lost"}


def clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


@dataclass
class Report:
    options: Options
    offline_spans: list[OfflineSpan]
    counts: Counter = field(default_factory=Counter)  # messages per kind (LOST_OFFLINE: readings not sent)
    acknowledged: int = 0
    wall_s: float = 0.0
    sim_s: float = 0.0  # simulated time of the latest message
    _jsonl: TextIO | None = None

    @property
    def sent(self) -> int:
        return sum(count for kind, count in self.counts.items() if kind != LOST_OFFLINE)

    def open_jsonl(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._jsonl = path.open("w", encoding="utf-8")

    def record(self, message: Message) -> None:
        self.counts[message.kind] += 1
        self.sim_s = max(self.sim_s, message.send_s)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(message.as_record(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def progress_line(self) -> str:
        kinds = " ".join(f"{_SHORT.get(kind, kind)} {self.counts[kind]:,}" for kind in KINDS if self.counts[kind])
        return (
            f"[{self.wall_s:7.1f}s] sim {clock(self.sim_s)}/{clock(self.options.duration_s)}"
            f"  sent {self.sent:,} acked {self.acknowledged:,}  {kinds}"
        )

    def summary(self) -> str:
        options = self.options
        rate = self.sent / self.wall_s if self.wall_s > 0 else 0.0
        lines = [
            f"simulated {options.devices} devices ({options.prefix}*) for {clock(options.duration_s)} at "
            f"{options.rate_per_minute:g}/min from {options.start.isoformat(timespec='seconds')}, seed {options.seed}",
            f"sent {self.sent:,} messages ({self.acknowledged:,} acknowledged) in {self.wall_s:.1f} s ({rate:,.0f} msg/s)",
        ]
        lines += [f"  {kind:<13}{self.counts[kind]:>9,}" for kind in KINDS]
        lines.append(f"offline gaps: {len(self.offline_spans)}")
        lines += [
            f"  {span.device_id} {clock(span.start_s)}-{clock(span.end_s)}"
            for span in sorted(self.offline_spans, key=lambda span: (span.start_s, span.device_id))
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "counts": {kind: self.counts[kind] for kind in KINDS},
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "wall_s": round(self.wall_s, 3),
            "offline_gaps": [
                {"device_id": span.device_id, "start_s": span.start_s, "end_s": span.end_s}
                for span in self.offline_spans
            ],
        }
