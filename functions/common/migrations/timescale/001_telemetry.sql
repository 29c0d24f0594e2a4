-- 001, TimescaleDB flavour: THE place for TimescaleDB-specific statements. Applied instead of
-- postgres/001_telemetry.sql when the server offers the timescaledb extension. Written against Timescale's
-- documented API (TimescaleDB >= 2.13: create_hypertable with by_range, compression and retention
-- policies); parsed in the tests, exercised for real by the LocalStack/TimescaleDB compose setup.

CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Same columns as the plain-PostgreSQL flavour (a test compares the two definitions).
CREATE TABLE telemetry (
    device_id   text NOT NULL,
    ts          timestamptz NOT NULL,
    seq         bigint NOT NULL,
    rss         real NOT NULL,
    battery     real,
    temperature real,
    humidity    real,
    firmware    text,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts, seq)
);

-- One-day chunks, created by TimescaleDB on insert (late readings included). create_default_indexes
-- adds the (ts DESC) index used by fleet-wide time-range queries.
SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'));

-- Compress chunks older than a week, segmented per device so per-device range scans stay cheap.
-- INSERT ... ON CONFLICT DO NOTHING into compressed chunks is supported (TimescaleDB >= 2.11), so late
-- readings for old days still land.
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'ts DESC, seq DESC'
);
SELECT add_compression_policy('telemetry', compress_after => INTERVAL '7 days');

-- Retention is a safety net behind the archive job (which exports to S3, verifies, then drops): it must be
-- longer than the archive's horizon so that nothing is dropped before it has been archived.
SELECT add_retention_policy('telemetry', drop_after => INTERVAL '400 days');

-- The ingest calls this for every batch on either flavour; hypertables create chunks on demand, so here
-- there is nothing to do.
CREATE FUNCTION telemetry_ensure_partitions(days date[]) RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;

CREATE FUNCTION telemetry_create_partitions_ahead(days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;
