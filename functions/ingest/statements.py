"""The ingest's SQL: the COPY targets and the one statement that does a batch's bookkeeping.

Every column list is common.telemetry.READING_COLUMNS, the order `parse_row` gives a reading's fields in.
The statements are composed once, here, into strings: psycopg renders a Composed query again at every
execution, but caches the parsing of a string.
"""

from common.telemetry import READING_COLUMNS
from psycopg import sql

# Each reading column's type in the binary COPY (and in the staging table, which mirrors telemetry's).
PG_TYPES = {"device_id": "text", "ts": "timestamptz", "seq": "int8", "rss": "float4", "battery": "float4",
            "temperature": "float4", "humidity": "float4", "firmware": "text", "payload": "jsonb",
            "received_at": "timestamptz"}  # fmt: skip
COLUMN_TYPES = tuple(PG_TYPES[name] for name in READING_COLUMNS)
COLUMNS = sql.SQL(", ").join(map(sql.Identifier, READING_COLUMNS))
# The staging table's rows vanish at commit.
CREATE_STAGING = (
    sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS ingest_staging ({}) ON COMMIT DELETE ROWS")
    .format(
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(PG_TYPES[name])) for name in READING_COLUMNS
        )
    )
    .as_string()
)
COPY_TELEMETRY = sql.SQL("COPY telemetry ({}) FROM STDIN (FORMAT BINARY)").format(COLUMNS).as_string()
COPY_STAGING = sql.SQL("COPY ingest_staging ({}) FROM STDIN (FORMAT BINARY)").format(COLUMNS).as_string()
ENSURE_PARTITIONS = "SELECT telemetry_ensure_partitions(%s::date[])"
# The direct COPY's fallback point (postgres.py).
SAVEPOINT = "SAVEPOINT direct_copy"
ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT direct_copy"

# A batch's line in ingest_stats, from a CTE `counts (accepted, rejected)`: one row per UTC minute and shard.
STATS_UPSERT = sql.SQL("""
INSERT INTO ingest_stats AS s (minute, shard_id, accepted, duplicates, rejected, batches)
SELECT date_trunc('minute', now(), 'UTC'), %(shard_id)s, accepted, %(valid)s - accepted, rejected, %(batches)s
FROM counts
ON CONFLICT (minute, shard_id) DO UPDATE
    SET accepted = s.accepted + excluded.accepted, duplicates = s.duplicates + excluded.duplicates,
        rejected = s.rejected + excluded.rejected, batches = s.batches + excluded.batches
""")
# The rest of the batch, after a CTE `inserted (device_id, ts)` of the readings it added. Hours are UTC hours,
# whatever the session time zone; duplicates touch nothing. Devices are upserted in key order so that
# concurrent batches lock them in the same order. Rejects are one row per Kinesis record however often it is
# delivered; ingest_stats counts the rejects newly recorded, so that its counters add up to the tables.
BOOKKEEPING = (
    sql.SQL("""
dirty AS (
    INSERT INTO kpi_dirty_hours (device_id, hour_start)
    SELECT DISTINCT device_id, date_trunc('hour', ts, 'UTC') FROM inserted
    ON CONFLICT DO NOTHING
), seen AS (
    INSERT INTO devices AS d (device_id, first_seen, last_seen)
    SELECT device_id, min(ts), max(ts) FROM inserted GROUP BY device_id ORDER BY device_id
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
    SELECT (SELECT count(*) FROM inserted) AS accepted, (SELECT count(*) FROM rejected) AS rejected
), stats AS (
""")
    + STATS_UPSERT
    + sql.SQL("""
)
SELECT accepted FROM counts
""")
)
# After a direct COPY every reading was inserted: the client sends their keys back.
BOOKKEEPING_AFTER_COPY = (
    sql.SQL("""
WITH inserted (device_id, ts) AS (SELECT * FROM unnest(%(device_ids)t::text[], %(timestamps)b::timestamptz[])),
""")
    + BOOKKEEPING
).as_string()
INSERT_FROM_STAGING = (
    sql.SQL("""
WITH inserted AS (
    INSERT INTO telemetry ({columns}) SELECT {columns} FROM ingest_staging
    ON CONFLICT DO NOTHING
    RETURNING device_id, ts
),
""").format(columns=COLUMNS)
    + BOOKKEEPING
).as_string()
