-- 004: alert state of the alerts function (functions/alerts). Plain SQL on both flavours.

-- One row per alert: opened once, resolved once. The Grafana "open alerts" panel reads this table:
--   SELECT ... FROM alerts WHERE status = 'open' ORDER BY severity, opened_at DESC
CREATE TABLE alerts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id          text NOT NULL,
    rule               text NOT NULL,     -- offline, low_uptime, weak_signal, low_battery, temperature_anomaly
    severity           text NOT NULL CHECK (severity IN ('warning', 'critical')),
    status             text NOT NULL CHECK (status IN ('open', 'resolved')),
    opened_at          timestamptz NOT NULL,
    resolved_at        timestamptz,
    last_value         double precision,  -- the rule's value at the latest evaluation with data
    threshold          double precision NOT NULL,
    message            text NOT NULL,     -- one sentence, for people: the state when the alert opened
    last_evaluated_at  timestamptz NOT NULL,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
-- At most one open alert per device and rule: a second "open" is a unique violation, never a duplicate.
CREATE UNIQUE INDEX alerts_one_open_per_device_rule ON alerts (device_id, rule) WHERE status = 'open';
-- "Open alerts" queries (dashboards, the alerts function's own load) read only the open rows.
CREATE INDEX alerts_open_idx ON alerts (opened_at DESC) WHERE status = 'open';
-- A device's alert history.
CREATE INDEX alerts_device_history_idx ON alerts (device_id, opened_at DESC);

-- Damping state per device and rule: whether the rule was breached at the latest evaluation that had data,
-- and since when (the first evaluation of the current streak). Written only when the state flips; a device
-- and rule without a row count as clear since forever.
CREATE TABLE alert_conditions (
    device_id     text NOT NULL,
    rule          text NOT NULL,
    breached      boolean NOT NULL,
    since         timestamptz NOT NULL,
    PRIMARY KEY (device_id, rule)
);

-- Transactional outbox: a notification row is written in the same transaction as the alert change it
-- announces, published to SNS after the commit and marked sent. Unsent rows are retried on every run, in
-- id order per alert (a "resolved" never overtakes its "opened").
CREATE TABLE alert_notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES alerts (id),
    event            text NOT NULL CHECK (event IN ('opened', 'resolved')),
    notification_id  text NOT NULL UNIQUE,  -- alert-<alert id>-<event>: subscribers' deduplication key
    subject          text NOT NULL,
    body             text NOT NULL,
    attributes       jsonb NOT NULL,        -- SNS message attributes, all strings
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz,
    message_id       text,                  -- the SNS MessageId once published
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    last_attempt_at  timestamptz,
    UNIQUE (alert_id, event)
);
CREATE INDEX alert_notifications_unsent_idx ON alert_notifications (id) WHERE sent_at IS NULL;
