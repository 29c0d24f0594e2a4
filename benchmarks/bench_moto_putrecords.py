"""Kinesis PutRecords/GetRecords on stock moto vs our patched launcher, both started in this run.

Stock moto's put_record rebuilds the shard's key list for every record (O(n)) and GetRecords scans the shard
from its start; localcloud.servers.moto_patches makes both independent of the shard's size. The patched
launcher keeps its records on disk (LOCALCLOUD_KINESIS_DB in a temporary folder), as `localcloud up` runs it.

Also on the client's side: the CPU a PutRecords call costs the caller per record, botocore's client (as the
rules engine used it: no parameter validation) against the runtime's records client (localcloud/runtime/
kinesis_client.py, which writes the records with orjson), on the patched launcher, rounds alternated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping

import boto3
from botocore.config import Config

from benchmarks import Figure
from localcloud.runtime.kinesis_client import records_client
from localcloud.servers.procs import free_port, terminate_group, wait_for_port

# Sized to keep the run near 1.5 minutes: stock moto's pre-fill is quadratic and dominates it.
PREFILL = 50_000
TIMED = 5_000
BATCH = 500
TIP_POLLS = 100
READ_LIMIT = 10_000  # GetRecords' maximum, what a consumer catching up asks for
CLIENT_ROUNDS = 5
RECORD = b'{"device_id":"dev-0001","ts":1714567890123,"seq":123456,"rss":-67,"battery":88.5,"temp":21.25}'
SERVERS: dict[str, list[str]] = {
    "stock moto": [sys.executable, "-m", "moto.server"],
    "patched moto": [sys.executable, "-m", "localcloud.servers.aws_endpoint"],
}


def start(command: list[str], env: Mapping[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, timeout=30, proc=proc)
    return proc, f"http://127.0.0.1:{port}"


def put(kinesis, stream: str, count: int) -> float:
    """Seconds to put `count` records in PutRecords batches."""
    entries = [{"Data": RECORD, "PartitionKey": "dev-0001"}] * BATCH
    started = time.perf_counter()
    for _ in range(count // BATCH):
        assert kinesis.put_records(StreamName=stream, Records=entries)["FailedRecordCount"] == 0
    return time.perf_counter() - started


def poll_tip(kinesis, stream: str) -> float:
    """Seconds for TIP_POLLS GetRecords at the tip (no new records), what the ESM poller does when idle."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="LATEST")
    iterator = iterator["ShardIterator"]
    started = time.perf_counter()
    for _ in range(TIP_POLLS):
        iterator = kinesis.get_records(ShardIterator=iterator, Limit=1000)["NextShardIterator"]
    return time.perf_counter() - started


def read_backlog(kinesis, stream: str) -> tuple[int, float]:
    """(records, seconds) to read the whole shard from TRIM_HORIZON, as a consumer catching up does."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    count = 0
    started = time.perf_counter()
    while records := (response := kinesis.get_records(ShardIterator=iterator, Limit=READ_LIMIT))["Records"]:
        count += len(records)
        iterator = response["NextShardIterator"]
    return count, time.perf_counter() - started


def measure(url: str) -> dict[str, float]:
    kinesis = boto3.client(
        "kinesis", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )

    def new_stream() -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        kinesis.create_stream(StreamName=name, ShardCount=1)
        return name

    put(kinesis, new_stream(), BATCH)  # warm-up: the first request loads the Kinesis/CloudWatch backends
    fresh = new_stream()
    rates = {"fresh": TIMED / put(kinesis, fresh, TIMED)}
    filled = new_stream()
    put(kinesis, filled, PREFILL)
    rates["prefilled"] = TIMED / put(kinesis, filled, TIMED)
    rates["tip polls"] = TIP_POLLS / poll_tip(kinesis, filled)
    count, seconds = read_backlog(kinesis, filled)
    assert count == PREFILL + TIMED, f"read {count} of {PREFILL + TIMED} records"
    rates["backlog read"] = count / seconds
    return rates


def client_cpu(url: str) -> dict[str, float]:
    """Microseconds of this thread's CPU per record put, for each client: the best of CLIENT_ROUNDS alternated
    rounds of TIMED records in calls of BATCH, each record of its own partition key (as the rules engine puts)."""
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    config = Config(parameter_validation=False)
    clients = {
        "botocore": boto3.client("kinesis", endpoint_url=url, region_name="us-east-1", config=config, **credentials),
        "records client": records_client(boto3.Session(region_name="us-east-1", **credentials), url, config),
    }
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    clients["botocore"].create_stream(StreamName=stream, ShardCount=1)
    entries = [{"Data": RECORD, "PartitionKey": f"dev-{i:04d}"} for i in range(BATCH)]
    best = dict.fromkeys(clients, float("inf"))
    for _ in range(CLIENT_ROUNDS):
        for name, kinesis in clients.items():
            started = time.thread_time()
            for _ in range(TIMED // BATCH):
                assert kinesis.put_records(StreamName=stream, Records=entries)["FailedRecordCount"] == 0
            best[name] = min(best[name], (time.thread_time() - started) / TIMED * 1e6)
    return best


def run() -> list[Figure]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="iotkpi-bench-kinesis-") as folder:
        for name, command in SERVERS.items():
            env = {"LOCALCLOUD_KINESIS_DB": os.path.join(folder, "kinesis.db")} if name == "patched moto" else {}
            proc, url = start(command, env)
            try:
                results[name] = measure(url)
                if name == "patched moto":
                    client_micros = client_cpu(url)
            finally:
                terminate_group(proc.pid)
                proc.wait(timeout=10)

    volume = f"{TIMED:,} records x {len(RECORD)} B, PutRecords batches of {BATCH}, 1 shard, 1 writer"
    filled_volume = f"{volume}, shard pre-filled with {PREFILL:,}"
    figures = [
        Figure(f"{server} PutRecords, fresh shard", "records/s", rates["fresh"], volume)
        for server, rates in results.items()
    ]
    figures += [
        Figure(f"{server} PutRecords, pre-filled shard", "records/s", rates["prefilled"], filled_volume)
        for server, rates in results.items()
    ]
    figures += [
        Figure(
            f"{server} GetRecords at the tip of the filled shard",
            "calls/s",
            rates["tip polls"],
            f"{TIP_POLLS} calls, shard of {PREFILL + TIMED:,} records",
        )
        for server, rates in results.items()
    ]
    figures += [
        Figure(
            f"{server} GetRecords reading the filled shard from TRIM_HORIZON",
            "records/s",
            rates["backlog read"],
            f"{PREFILL + TIMED:,} records x {len(RECORD)} B, Limit {READ_LIMIT:,}",
        )
        for server, rates in results.items()
    ]
    patched, stock = results["patched moto"], results["stock moto"]
    ratio: Callable[[str], float] = lambda key: patched[key] / stock[key]  # noqa: E731
    figures += [
        Figure("patched / stock PutRecords rate, pre-filled shard", "x", ratio("prefilled"), filled_volume),
        Figure("patched / stock PutRecords rate, fresh shard", "x", ratio("fresh"), volume),
        Figure(
            "patched PutRecords rate, pre-filled / fresh shard",
            "x",
            patched["prefilled"] / patched["fresh"],
            filled_volume,
            goal=">= 0.8x (rate independent of shard size)",
            met=patched["prefilled"] / patched["fresh"] >= 0.8,
        ),
    ]
    client_volume = f"{TIMED:,} records x {len(RECORD)} B, calls of {BATCH}, best of {CLIENT_ROUNDS} alternated rounds"
    figures += [
        Figure(f"PutRecords, the caller's CPU per record: {name}", "us", micros, client_volume)
        for name, micros in client_micros.items()
    ]
    figures.append(
        Figure("PutRecords caller's CPU, records client / botocore", "x",
               client_micros["records client"] / client_micros["botocore"], client_volume)
    )  # fmt: skip
    return figures
