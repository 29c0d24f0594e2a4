"""Payload bytes: a device's reading, and the malformed and oversized messages the ingest must refuse. Pure.

The size limit is the ingest's own (`common.telemetry.DEFAULT_LIMITS.max_bytes`), imported rather than copied so
that an oversized message stays oversized when the limit changes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from localcloud.config import import_functions

import_functions()  # the limits come from the ingest's own validation (common.telemetry)

from common.telemetry import DEFAULT_LIMITS  # noqa: E402

INGEST_MAX_BYTES = DEFAULT_LIMITS.max_bytes
EPOCH_MS, ISO = "epoch_ms", "iso"  # how a device writes `ts`
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def ts_field(ts: datetime, ts_format: str) -> str | int:
    if ts_format == EPOCH_MS:
        return (ts - EPOCH) // timedelta(milliseconds=1)
    return ts.isoformat(timespec="milliseconds")


def reading(ts: datetime, ts_format: str, seq: int, measurements: dict) -> dict:
    return {"ts": ts_field(ts, ts_format), "seq": seq, **measurements}


def _truncated(document: dict, rng: random.Random) -> bytes:
    # Any strict prefix of a JSON object is invalid JSON (its closing brace is missing).
    raw = encode(document)
    return raw[: rng.randrange(1, len(raw))]


def _rss_as_text(document: dict, _rng: random.Random) -> bytes:
    return encode({**document, "rss": f"{document['rss']} dBm"})


def _seq_as_text(document: dict, _rng: random.Random) -> bytes:
    return encode({**document, "seq": str(document["seq"])})


def _missing_rss(document: dict, _rng: random.Random) -> bytes:
    return encode({key: value for key, value in document.items() if key != "rss"})


def _unreadable_ts(document: dict, rng: random.Random) -> bytes:
    return encode({**document, "ts": rng.choice(["yesterday", "2024-13-45T99:00:00", ""])})


# Variant name -> how to spoil a good reading. Names say what is wrong, not what the ingest calls it.
MALFORMED_VARIANTS: dict[str, Callable[[dict, random.Random], bytes]] = {
    "invalid_json": _truncated,
    "rss_as_text": _rss_as_text,
    "seq_as_text": _seq_as_text,
    "missing_rss": _missing_rss,
    "unreadable_ts": _unreadable_ts,
}


def malformed(document: dict, rng: random.Random) -> tuple[str, bytes]:
    variant = rng.choice(sorted(MALFORMED_VARIANTS))
    return variant, MALFORMED_VARIANTS[variant](document, rng)


def oversize(document: dict, rng: random.Random) -> bytes:
    """A well-formed reading padded past the ingest's limit by a few bytes to a few KiB."""
    overshoot = rng.randint(1, 4096)
    base = len(encode({**document, "padding": ""}))
    return encode({**document, "padding": "x" * (INGEST_MAX_BYTES - base + overshoot)})
