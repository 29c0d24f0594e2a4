-- 001: the tables every flavour shares. The telemetry table itself is flavour-specific
-- (postgres/001_telemetry.sql: native range partitions; timescale/001_telemetry.sql: hypertable) and is
-- applied right after this file, in the same transaction.

-- Devices register themselves with their first reading (the ingest upserts them in its batch transaction).
CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    name        text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_test     boolean NOT NULL DEFAULT false,
    first_seen  timestamptz NOT NULL,  -- earliest reading ts
    last_seen   timestamptz NOT NULL,  -- latest reading ts
    registered_at timestamptz NOT NULL DEFAULT now()
);
-- No index on last_seen: every batch updates it, and without an index those updates stay HOT (cheap);
-- fleet queries read the whole (small) table anyway.

-- Readings the ingest refused, with the raw record bytes and why. One row per Kinesis record, whatever
-- how often it is redelivered: (shard_id, sequence_number) identifies a record within a stream.
CREATE TABLE ingest_rejects (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shard_id        text NOT NULL,
    sequence_number text NOT NULL,
    device_id       text,             -- when it could be read from the record
    reason_code     text NOT NULL,    -- short, stable: invalid_json, bad_ts, oversize, ...
    reason          text NOT NULL,    -- code and detail, for humans
    raw             bytea NOT NULL,
    arrived_at      timestamptz,      -- Kinesis approximateArrivalTimestamp
    rejected_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shard_id, sequence_number)
);
CREATE INDEX ingest_rejects_rejected_at_idx ON ingest_rejects (rejected_at);
CREATE INDEX ingest_rejects_device_idx ON ingest_rejects (device_id, rejected_at);

-- Hours whose KPIs must be (re)computed: the ingest adds the hours touched by newly inserted readings in
-- the same statement as the insert; the KPI job claims and deletes them. Late readings thus re-aggregate
-- exactly the windows they fall in.
CREATE TABLE kpi_dirty_hours (
    device_id  text NOT NULL,
    hour_start timestamptz NOT NULL,
    PRIMARY KEY (device_id, hour_start)
);
CREATE INDEX kpi_dirty_hours_hour_idx ON kpi_dirty_hours (hour_start);

-- Read-only group role for dashboards (Grafana logs in as a LOGIN role that is a member of it). Roles are
-- cluster-wide, so creating it must tolerate another database having created it first.
DO $$
BEGIN
    CREATE ROLE iotkpi_reader NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO iotkpi_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO iotkpi_reader;
-- Tables created by later migrations (run by the same role) are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO iotkpi_reader;
