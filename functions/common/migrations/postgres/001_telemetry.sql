-- 001, plain PostgreSQL flavour: telemetry as a table natively partitioned by day on ts (UTC days).
-- The TimescaleDB flavour (timescale/001_telemetry.sql) creates the same columns as a hypertable.

CREATE TABLE telemetry (
    device_id   text NOT NULL,
    ts          timestamptz NOT NULL,   -- device clock; the partition key
    seq         bigint NOT NULL,        -- per-device counter
    rss         real NOT NULL,          -- dBm
    battery     real,                   -- %
    temperature real,                   -- °C
    humidity    real,                   -- %
    firmware    text,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the reading's other fields
    received_at timestamptz,            -- IoT rule timestamp()
    ingested_at timestamptz NOT NULL DEFAULT now(),
    -- The idempotency key: redelivered readings hit it and are ignored. It also serves every per-device
    -- time-range query (dashboards, KPI job), forwards and backwards.
    PRIMARY KEY (device_id, ts, seq)
) PARTITION BY RANGE (ts);
-- Fleet-wide time-range queries (all devices in the last N minutes).
CREATE INDEX telemetry_ts_idx ON telemetry (ts);

-- Partitions are named telemetry_pYYYYMMDD and hold one UTC day. There is no DEFAULT partition: rows in
-- a default partition would have to be moved out before the day's partition could be created. Instead the
-- ingest calls telemetry_ensure_partitions for the days of each batch (late and backfilled readings
-- included) before inserting it.
CREATE FUNCTION telemetry_ensure_partitions(days date[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    partition_name text;
    created integer := 0;
BEGIN
    FOREACH day IN ARRAY days LOOP
        partition_name := 'telemetry_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(partition_name) IS NOT NULL;
        -- Concurrent ingests may want the same new day: serialise creators, then look again.
        PERFORM pg_advisory_xact_lock(hashtext('iotkpi.telemetry_partitions'));
        CONTINUE WHEN to_regclass(partition_name) IS NOT NULL;
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
            partition_name,
            day::timestamp AT TIME ZONE 'UTC',
            (day + 1)::timestamp AT TIME ZONE 'UTC'
        );
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Partitions for today (UTC) and the next days_ahead days; run at migration time and by any scheduled job.
CREATE FUNCTION telemetry_create_partitions_ahead(days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE sql AS $$
    SELECT telemetry_ensure_partitions(ARRAY(
        SELECT (timezone('UTC', now())::date + offset_days)
        FROM generate_series(-1, days_ahead) AS offset_days
    ))
$$;

SELECT telemetry_create_partitions_ahead(7);
