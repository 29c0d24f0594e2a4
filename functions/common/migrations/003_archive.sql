-- 003: state of the archive function (functions/archive). One row per UTC day it has taken on; plain SQL on
-- both flavours (only the drop itself differs, see archive/pg_store.py).
--
-- The state machine, one committed step at a time, so that a crash anywhere leaves a state the next run
-- can finish from without losing or duplicating a reading:
--   exporting  the day's readings are all in the database (rows an earlier archive held were merged back
--              first); S3 objects under the day's prefix are work in progress
--   uploaded   parts and manifest (written last) are in S3, as recorded here
--   verified   every object was read back: sizes and SHA-256 match the manifest
--   dropped    the day's partition/chunks were dropped in the same transaction that set this state; the
--              manifest in S3 is now the only copy
CREATE TABLE archive_days (
    day              date PRIMARY KEY,
    state            text NOT NULL CHECK (state IN ('exporting', 'uploaded', 'verified', 'dropped')),
    manifest_key     text NOT NULL,
    manifest_sha256  text,            -- hex, of the manifest object; set from 'uploaded' on
    row_count        bigint,          -- readings in the archive
    raw_bytes        bigint,          -- uncompressed CSV bytes
    stored_bytes     bigint,          -- gzip bytes in S3, all parts
    parts            jsonb,           -- the manifest's part list (key, rows, sizes, sha256)
    attempts         integer NOT NULL DEFAULT 0,  -- exports started
    last_error       text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'exporting' OR (manifest_sha256 IS NOT NULL AND row_count IS NOT NULL))
);
CREATE INDEX archive_days_unfinished_idx ON archive_days (day) WHERE state <> 'dropped';
