"""Records every batch it sees, then behaves as the records' JSON data asks.

Each record's data is a JSON object: `id` (required) and optionally
- `raise`: N — fail the whole invocation (unhandled error) on this record's first N deliveries (-1: always);
- `report`: N — report this record in batchItemFailures on its first N deliveries;
- `malformed`: N — answer with an empty itemIdentifier on its first N deliveries;
- `sleep`: seconds to sleep before answering;
- `response`: "null" | "empty" | "missing" — how to say "no failures" (default: an empty list).
Batches are appended as JSON lines to the file named by ESM_PROBE_LOG (locked, so concurrent invocations
and the delivery counts stay exact): {"request_id", "records": [{"id", "seq", "key", "event_id"}]}.
"""

import fcntl
import json
import os
import time

from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent, event_source

NO_FAILURES = {"null": {"batchItemFailures": None}, "empty": {"batchItemFailures": []}, "missing": {}}


class PoisonRecordError(Exception):
    pass


def _record_batch(path: str, entry: dict) -> dict[str, int]:
    """Append the batch; return how many times each record id had been delivered before."""
    with open(path, "a+", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.seek(0)
        seen: dict[str, int] = {}
        for line in log:
            for record in json.loads(line)["records"]:
                seen[record["id"]] = seen.get(record["id"], 0) + 1
        log.write(json.dumps(entry) + "\n")
        log.flush()
        return seen


def _active(times: int | None, earlier_deliveries: int) -> bool:
    return times is not None and (times == -1 or earlier_deliveries < times)


@event_source(data_class=KinesisStreamEvent)
def lambda_handler(event: KinesisStreamEvent, context):
    records = [
        (r.kinesis.sequence_number, r.kinesis.partition_key, r.event_id, r.kinesis.data_as_json())
        for r in event.records
    ]
    entry = {
        "request_id": context.aws_request_id,
        "records": [{"id": data["id"], "seq": seq, "key": key, "event_id": eid} for seq, key, eid, data in records],
    }
    earlier = _record_batch(os.environ["ESM_PROBE_LOG"], entry)

    time.sleep(max((data.get("sleep", 0) for *_, data in records), default=0))
    failures = []
    response = NO_FAILURES["empty"]
    for seq, _key, _eid, data in records:
        before = earlier.get(data["id"], 0)
        if _active(data.get("raise"), before):
            raise PoisonRecordError(f"record {data['id']} fails on purpose")
        if _active(data.get("malformed"), before):
            return {"batchItemFailures": [{"itemIdentifier": ""}]}
        if _active(data.get("report"), before):
            failures.append({"itemIdentifier": seq})
        if "response" in data:
            response = NO_FAILURES[data["response"]]
    return {"batchItemFailures": failures} if failures else response
