"""The ingest's SQL: the COPY targets and the statement that does a batch's bookkeeping (one per way in).

Every column list is common.telemetry.READING_COLUMNS, the order `parse_row` gives a reading's fields in (the
COPYs of a batch without extra fields leave payload out).
The statements are composed once, here, into strings: psycopg renders a Composed query again at every
execution, but caches the parsing of a string.
"""

from typing import NamedTuple

from common.telemetry import READING_COLUMNS
from psycopg import sql

# Each reading column's type in the binary COPY (and in the staging table, which mirrors telemetry's).
PG_TYPES = {"device_id": "text", "ts": "timestamptz", "seq": "int8", "rss": "float4", "battery": "float4",
            "temperature": "float4", "humidity": "float4", "firmware": "text", "payload": "jsonb",
            "received_at": "timestamptz"}  # fmt: skip
COLUMNS = sql.SQL(", ").join(map(sql.Identifier, READING_COLUMNS))
# The staging table's rows vanish at commit. payload has telemetry's default, for the COPYs without the column.
CREATE_STAGING = (
    sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS ingest_staging ({}) ON COMMIT DELETE ROWS")
    .format(
        sql.SQL(", ").join(
            sql.SQL("{} {}{}").format(
                sql.Identifier(name),
                sql.SQL(PG_TYPES[name]),
                sql.SQL(" DEFAULT '{}'::jsonb" if name == "payload" else ""),
            )
            for name in READING_COLUMNS
        )
    )
    .as_string()
)


class CopyLayout(NamedTuple):
    """The columns a batch's rows are COPied as: their types, and the COPY into telemetry and into the staging
    table (the same data serves both)."""

    types: tuple[str, ...]
    telemetry: str
    staging: str


def _copy_layout(columns: tuple[str, ...]) -> CopyLayout:
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)")
    return CopyLayout(
        tuple(PG_TYPES[name] for name in columns),
        copy.format(sql.SQL("telemetry"), names).as_string(),
        copy.format(sql.SQL("ingest_staging"), names).as_string(),
    )


# Every reading column, in READING_COLUMNS order.
ALL_COLUMNS = _copy_layout(READING_COLUMNS)
# The same without payload, whose default ('{}') is what a reading without extra fields stores: a batch of only
# such readings (the usual one) spares the client a jsonb value to encode and the server one to parse a row.
WITHOUT_PAYLOAD = _copy_layout(tuple(name for name in READING_COLUMNS if name != "payload"))
ENSURE_PARTITIONS = "SELECT telemetry_ensure_partitions(%s::date[])"

# A batch's line in ingest_stats, from a CTE `counts (accepted, rejected)`: one row per UTC minute and shard.
STATS_UPSERT = sql.SQL("""
INSERT INTO ingest_stats AS s (minute, shard_id, accepted, duplicates, rejected, batches)
SELECT date_trunc('minute', now(), 'UTC'), %(shard_id)s, accepted, %(valid)s - accepted, rejected, %(batches)s
FROM counts
ON CONFLICT (minute, shard_id) DO UPDATE
    SET accepted = s.accepted + excluded.accepted, duplicates = s.duplicates + excluded.duplicates,
        rejected = s.rejected + excluded.rejected, batches = s.batches + excluded.batches
""")


def _bookkeeping(head: sql.Composable, accepted: str, spans_order: str) -> str:
    """A bookkeeping statement: `head`, CTEs that end with `spans (device_id, first_seen, last_seen)` (each
    device's earliest and latest reading added) and `dirty` (the KPI job's dirty hours), then the device
    registry, the rejects and the batch's counts; `accepted` is the SQL of the number of readings added;
    `spans_order`, the ORDER BY that puts the spans in device_id order, if they are not already.

    Devices are upserted in device_id order, byte by byte (COLLATE "C", the order Python sorts str in), so that
    concurrent batches, whichever way in, lock them in the same order; their first_seen/last_seen only ever widen
    (a row is written only when they do). Rejects are one row per Kinesis record however often it is delivered;
    ingest_stats counts the rejects newly recorded, so that its counters add up to the tables."""
    return (
        head
        + sql.SQL("""
), seen AS (
    INSERT INTO devices AS d (device_id, first_seen, last_seen)
    SELECT device_id, first_seen, last_seen FROM spans{spans_order}
    ON CONFLICT (device_id) DO UPDATE
        SET first_seen = least(d.first_seen, excluded.first_seen),
            last_seen = greatest(d.last_seen, excluded.last_seen)
        WHERE excluded.first_seen < d.first_seen OR excluded.last_seen > d.last_seen
), rejected AS (
    INSERT INTO ingest_rejects (shard_id, sequence_number, device_id, reason_code, reason, raw, arrived_at)
    SELECT * FROM unnest(%(reject_shards)b::text[], %(reject_sequences)b::text[], %(reject_devices)b::text[],
                         %(reject_codes)b::text[], %(reject_reasons)b::text[], %(reject_raws)b::bytea[],
                         %(reject_arrivals)b::timestamptz[])
    ON CONFLICT (shard_id, sequence_number) DO NOTHING
    RETURNING 1
), counts AS (
    SELECT {accepted} AS accepted, (SELECT count(*) FROM rejected) AS rejected
), stats AS (""").format(accepted=sql.SQL(accepted), spans_order=sql.SQL(spans_order))
        + STATS_UPSERT
        + sql.SQL("""
)
SELECT accepted FROM counts
""")
    ).as_string()


# The direct way's readings are all inserted once its COPY succeeds, and the client sends their keys summed up
# (ingest.batch.DeviceSpans): each device's span, and a reading of each of its hours, which spares the server
# grouping every reading. The spans come sorted by device_id, and unnest gives them to the upsert in that order: no
# sort. Hours are UTC hours whatever the session time zone (date_bin would be cheaper, but needs PostgreSQL 14).
# They are not made distinct (DISTINCT cost more than it saves): the hour readings are one per (device, hour) but
# for a device whose readings span an hour or more (or are not in UTC), and ON CONFLICT absorbs those repeats. A
# dirty hour already marked is skipped by the anti-join, cheaper than ON CONFLICT's probe and insert attempt for
# each; ON CONFLICT stays for the marks that concurrent batches add meanwhile. The anti-join's snapshot misses no
# claim of the KPI job: the job locks kpi_dirty_hours in a mode that conflicts with this statement's lock, which is
# taken before the statement's snapshot, so a claim either commits before that snapshot or waits for this batch to
# commit.
BOOKKEEPING_OF_DIRECT_COPY = _bookkeeping(
    sql.SQL("""
WITH spans (device_id, first_seen, last_seen) AS (
    SELECT * FROM unnest(%(span_devices)t::text[], %(first_seen)b::timestamptz[], %(last_seen)b::timestamptz[])
), hours AS (
    SELECT device_id, date_trunc('hour', ts, 'UTC') AS hour_start
    FROM unnest(%(hour_devices)t::text[], %(hour_timestamps)b::timestamptz[]) AS readings (device_id, ts)
), dirty AS (
    INSERT INTO kpi_dirty_hours (device_id, hour_start)
    SELECT device_id, hour_start FROM hours
    WHERE NOT EXISTS (SELECT FROM kpi_dirty_hours k WHERE k.device_id = hours.device_id
                                                      AND k.hour_start = hours.hour_start)
    ON CONFLICT DO NOTHING"""),
    "%(valid)s::bigint",
    "",
)
# The staged batch: the new readings go in with ON CONFLICT DO NOTHING, and the bookkeeping is that of the
# readings the insert returns (duplicates touch nothing).
INSERT_FROM_STAGING = _bookkeeping(
    sql.SQL("""
WITH inserted AS (
    INSERT INTO telemetry ({columns}) SELECT {columns} FROM ingest_staging
    ON CONFLICT DO NOTHING
    RETURNING device_id, ts
), spans AS (
    SELECT device_id, min(ts) AS first_seen, max(ts) AS last_seen FROM inserted GROUP BY device_id
), dirty AS (
    INSERT INTO kpi_dirty_hours (device_id, hour_start)
    SELECT DISTINCT device_id, date_trunc('hour', ts, 'UTC') FROM inserted
    ON CONFLICT DO NOTHING""").format(columns=COLUMNS),
    "(SELECT count(*) FROM inserted)",
    ' ORDER BY device_id COLLATE "C"',
)
