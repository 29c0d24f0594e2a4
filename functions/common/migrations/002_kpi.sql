-- 002: KPI tables of the aggregate function (functions/aggregate). Plain SQL on both flavours, so that the
-- results are identical on TimescaleDB and plain PostgreSQL. All windows are aligned to UTC.

-- Per device and window. A window is [window_start, window_end), window_minutes 5 or 60. Every closed
-- window from the device's first reading on has a row (message_count 0 when the device was silent); an open
-- window has a row once it has readings, marked is_closed = false, and is recomputed when it closes.
CREATE TABLE device_kpi (
    device_id           text NOT NULL,
    window_minutes      smallint NOT NULL CHECK (window_minutes IN (5, 60)),
    window_start        timestamptz NOT NULL,
    window_end          timestamptz NOT NULL,
    is_closed           boolean NOT NULL,         -- false: computed before window_end, partial
    message_count       integer NOT NULL,         -- readings (distinct (ts, seq))
    active_minutes      smallint NOT NULL,        -- UTC minutes with at least one reading
    inactive_minutes    smallint NOT NULL,        -- window_minutes - active_minutes
    uptime_pct          double precision NOT NULL,  -- active_minutes / window_minutes * 100
    avg_rss             double precision,         -- dBm; NULL without readings
    min_rss             real,
    max_rss             real,
    min_battery         real,                     -- %; NULL when no reading carried it
    avg_temperature     double precision,         -- °C
    stddev_temperature  double precision,         -- sample standard deviation; NULL below two values
    distinct_seq_count  integer NOT NULL,         -- readings with a seq not seen just before (duplicates once)
    expected_count      integer NOT NULL,         -- readings the seq counter says were sent (see aggregate/kpi_store.py)
    completeness_pct    double precision,         -- distinct_seq_count / expected_count * 100; NULL without readings
    last_seen           timestamptz,              -- latest reading ts in the window
    computed_at         timestamptz NOT NULL,
    PRIMARY KEY (device_id, window_minutes, window_start),
    CHECK (window_end = window_start + make_interval(mins => window_minutes))
);
-- The primary key serves a device's time series and its latest window (ORDER BY window_start DESC LIMIT 1).
-- This one serves "all devices in a window" (fleet KPIs, dashboards' fleet panels).
CREATE INDEX device_kpi_window_idx ON device_kpi (window_minutes, window_start);

-- Fleet per 5-minute window: registered non-test devices (first reading before window_end), how many sent
-- at least one reading in the window, and availability = active / registered * 100.
CREATE TABLE fleet_kpi (
    window_start        timestamptz PRIMARY KEY,
    window_end          timestamptz NOT NULL,
    window_minutes      smallint NOT NULL DEFAULT 5 CHECK (window_minutes = 5),
    is_closed           boolean NOT NULL,
    registered_devices  integer NOT NULL,
    active_devices      integer NOT NULL,
    inactive_devices    integer NOT NULL,
    availability_pct    double precision NOT NULL, -- windows before any registration have no row
    computed_at         timestamptz NOT NULL
);

-- Fleet availability now: registered non-test devices seen (latest reading ts) in the last 5 minutes.
CREATE VIEW fleet_availability_now AS
SELECT
    count(*)::integer AS registered_devices,
    count(*) FILTER (WHERE last_seen > now() - interval '5 minutes')::integer AS active_devices,
    count(*) FILTER (WHERE last_seen <= now() - interval '5 minutes')::integer AS inactive_devices,
    100.0 * count(*) FILTER (WHERE last_seen > now() - interval '5 minutes') / nullif(count(*), 0)
        AS availability_pct
FROM devices
WHERE NOT is_test;

-- Run state of the aggregate, one row. closed_until: every window ending at or before it has been computed
-- for every device (the closed-windows watermark). Runs lock this row, so they never overlap.
CREATE TABLE kpi_aggregate_state (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    closed_until  timestamptz,
    last_run_at   timestamptz,
    last_summary  jsonb
);
INSERT INTO kpi_aggregate_state (singleton) VALUES (true);

-- Dirty hours claimed from kpi_dirty_hours but not yet recomputed (mark and sweep): a run moves marks here
-- in a short transaction, then recomputes and deletes them in a second one, so a crash loses no mark.
CREATE TABLE kpi_pending_hours (
    device_id   text NOT NULL,
    hour_start  timestamptz NOT NULL,
    PRIMARY KEY (device_id, hour_start)
);
