-- 005: ingest statistics per minute and shard, for the "ingest health" dashboard panel.
-- The ingest upserts one row per batch in the batch's own transaction, so the counters agree with what the
-- tables hold: summed over all rows, accepted = readings stored, rejected = rows of ingest_rejects.
-- One row per shard, not one per minute: concurrent batches of different shards never wait for each
-- other's row lock, and a shard that stops ingesting shows as such. Dashboards sum over shards:
--   SELECT minute AS time, sum(accepted), sum(duplicates), sum(rejected), sum(batches)
--   FROM ingest_stats WHERE minute >= now() - interval '6 hours' GROUP BY 1 ORDER BY 1
CREATE TABLE ingest_stats (
    minute     timestamptz NOT NULL,            -- start of the UTC minute the batches were stored in
    shard_id   text NOT NULL,                   -- Kinesis shard the batches came from
    accepted   bigint NOT NULL DEFAULT 0,       -- readings stored
    duplicates bigint NOT NULL DEFAULT 0,       -- valid readings already stored (redelivery, resent by the device)
    rejected   bigint NOT NULL DEFAULT 0,       -- records newly recorded in ingest_rejects (not their redeliveries)
    batches    bigint NOT NULL DEFAULT 0,       -- batches stored
    PRIMARY KEY (minute, shard_id)              -- also serves the dashboard's time-range scan
);
