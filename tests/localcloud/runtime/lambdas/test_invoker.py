"""The local Lambda invoker against a real moto server, running the probe function (tests/probe_lambdas/probe)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

import pytest

from localcloud.config import REPO_ROOT
from localcloud.runtime.lambdas.cloudwatch import LogShipper
from localcloud.runtime.lambdas.function import FunctionNotFoundError
from localcloud.runtime.lambdas.invoker import LambdaInvoker
from localcloud.servers.moto_patches.awslambda_deploy import hot_reload_code
from localcloud.servers.procs import free_port, pid_alive
from tests.fixtures.aws import REGION

PROBE_DIR = REPO_ROOT / "tests" / "probe_lambdas" / "probe"
PROBE_HANDLER = "probe.handler.lambda_handler"
ASSUME_ROLE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@pytest.fixture(scope="module")
def lambda_role(aws_endpoint) -> str:
    iam = aws_endpoint.client("iam")
    try:
        return iam.create_role(RoleName="invoker-tests", AssumeRolePolicyDocument=json.dumps(ASSUME_ROLE))["Role"][
            "Arn"
        ]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName="invoker-tests")["Role"]["Arn"]


@pytest.fixture
def deploy_probe(aws_endpoint, lambda_role):
    """Create the probe as a function with a unique name; return the name."""
    lambda_client = aws_endpoint.client("lambda")

    def deploy(*, timeout=3, memory=128, environment=None, reserved_concurrency=None, handler=PROBE_HANDLER):
        name = f"probe-{uuid.uuid4().hex[:12]}"
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=lambda_role,
            Handler=handler,
            Code=hot_reload_code(PROBE_DIR.parent),
            Timeout=timeout,
            MemorySize=memory,
            Environment={"Variables": environment or {}},
        )
        if reserved_concurrency is not None:
            lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved_concurrency)
        return name

    return deploy


@pytest.fixture
def invoker(aws_endpoint, tmp_path):
    lambda_invoker = LambdaInvoker(aws_endpoint.url, REGION, config_refresh_s=0, log_dir=tmp_path / "logs")
    yield lambda_invoker
    lambda_invoker.close()


def test_event_and_return_value_round_trip(invoker, deploy_probe):
    name = deploy_probe()
    event = {"device": "dev-1", "values": [1, 2.5, None, True], "nested": {"text": "über ✓"}}

    result = invoker.invoke(name, event)

    assert result.ok, result.error
    assert result.payload["event"] == event
    assert result.function_name == name


def test_function_sees_exactly_its_environment(invoker, deploy_probe, aws_endpoint, monkeypatch):
    monkeypatch.setenv("INVOKER_ONLY_VARIABLE", "must not leak")
    name = deploy_probe(memory=256, environment={"THRESHOLD": "42", "LOG_LEVEL": "DEBUG"})

    result = invoker.invoke(name, {"action": "environ"})

    environ = result.payload["environ"]
    task_root = str(PROBE_DIR.parent)
    assert environ["THRESHOLD"] == "42"
    assert environ["LOG_LEVEL"] == "DEBUG"
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert environ["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert environ["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert environ["AWS_REGION"] == environ["AWS_DEFAULT_REGION"] == REGION
    assert environ["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert environ["_HANDLER"] == PROBE_HANDLER
    assert environ["LAMBDA_TASK_ROOT"] == task_root
    assert environ["TZ"] == ":UTC"
    assert environ["AWS_ENDPOINT_URL"] == aws_endpoint.url
    assert (environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"]) == ("test", "test")
    assert environ["_X_AMZN_TRACE_ID"].startswith("Root=1-")
    assert result.payload["cwd"] == task_root
    lambda_defined = {
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "LAMBDA_TASK_ROOT",
        "TZ",
        "PATH",
        "LANG",
    }
    assert set(environ) == lambda_defined | {"THRESHOLD", "LOG_LEVEL"}


def test_context_has_lambda_fields_and_remaining_time_counts_down(invoker, deploy_probe, aws_endpoint):
    name = deploy_probe(timeout=5, memory=256)
    arn = aws_endpoint.client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]

    result = invoker.invoke(name, {"action": "context", "pause_s": 0.05})

    context = result.payload
    assert context["function_name"] == name
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == arn
    assert context["memory_limit_in_mb"] == "256"  # a string, as the Lambda runtime gives it
    assert context["aws_request_id"] == result.request_id
    assert context["log_group_name"] == f"/aws/lambda/{name}"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", context["log_stream_name"])
    assert context["identity"] == [None, None]
    assert context["client_context"] is None
    first, second = context["remaining_ms"]
    assert 0 < second < first <= 5000


def test_powertools_logger_injects_the_context(invoker, deploy_probe):
    name = deploy_probe(memory=256)

    result = invoker.invoke(name, {"action": "powertools"})

    assert result.ok, result.error
    record = next(json.loads(line) for line in result.log_tail.splitlines() if "powertools logger says" in line)
    assert record["function_request_id"] == result.request_id
    assert record["function_name"] == name
    assert record["function_memory_size"] == "256"
    assert record["cold_start"] is True


def test_environment_stays_warm_and_keeps_module_state(invoker, deploy_probe):
    name = deploy_probe()

    first = invoker.invoke(name, {})
    second = invoker.invoke(name, {})

    assert second.payload["pid"] == first.payload["pid"]
    assert [first.payload["invocations"], second.payload["invocations"]] == [1, 2]
    assert "INIT_START" in first.log_tail and "Init Duration:" in first.log_tail
    assert "probe module imported" in first.log_tail
    assert "INIT_START" not in second.log_tail and "Init Duration:" not in second.log_tail
    assert [entry["cold_start"] for entry in invoker.recent(2)] == [False, True]


@pytest.mark.timeout(60)
def test_timeout_kills_the_environment_and_the_next_start_is_cold(invoker, deploy_probe):
    name = deploy_probe(timeout=1)
    warm_pid = invoker.invoke(name, {}).payload["pid"]

    result = invoker.invoke(name, {"action": "sleep", "seconds": 30})

    assert result.error == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert re.search(rf"Z {result.request_id} Task timed out after \d+\.\d\d seconds", result.log_tail)
    assert "Status: timeout" in result.log_tail
    assert not pid_alive(warm_pid)
    after = invoker.invoke(name, {})
    assert after.payload["pid"] != warm_pid
    assert after.payload["invocations"] == 1


def test_unhandled_exception_has_lambdas_error_shape_and_environment_stays_warm(invoker, deploy_probe):
    name = deploy_probe()

    result = invoker.invoke(name, {"action": "raise", "message": "boom on purpose"})

    assert not result.ok
    assert result.error["errorType"] == "ProbeError"
    assert result.error["errorMessage"] == "boom on purpose"
    assert result.error["requestId"] == result.request_id
    trace = result.error["stackTrace"]
    assert all(isinstance(frame, str) for frame in trace)
    assert trace[0].startswith(f'  File "{PROBE_DIR / "handler.py"}"')  # the runtime's own frames are dropped
    assert 'raise ProbeError(event["message"])' in trace[-1]
    assert "[ERROR] ProbeError: boom on purpose" in result.log_tail
    after = invoker.invoke(name, {})
    assert after.payload["invocations"] == 2


@pytest.mark.parametrize(
    ("event", "reason"),
    [({"action": "exit", "status": 3}, "exit status 3"), ({"action": "segfault"}, "signal: segmentation fault")],
)
def test_process_crash_is_a_runtime_exit_error(invoker, deploy_probe, event, reason):
    name = deploy_probe()
    warm_pid = invoker.invoke(name, {}).payload["pid"]

    result = invoker.invoke(name, event)

    assert result.error == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: {reason}",
    }
    assert "Error Type: Runtime.ExitError" in result.log_tail
    assert invoker.invoke(name, {}).payload["pid"] != warm_pid


def test_return_value_must_be_json_serialisable(invoker, deploy_probe):
    name = deploy_probe()

    result = invoker.invoke(name, {"action": "unserialisable"})

    assert result.error["errorType"] == "Runtime.MarshalError"
    assert result.error["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_missing_handler_module_is_an_import_error(invoker, deploy_probe):
    name = deploy_probe(handler="probe.absent.lambda_handler")

    result = invoker.invoke(name, {})

    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert result.error["errorMessage"] == "Unable to import module 'probe.absent': No module named 'probe.absent'"


def test_unknown_function_is_refused(invoker):
    with pytest.raises(FunctionNotFoundError):
        invoker.invoke(f"absent-{uuid.uuid4().hex[:8]}", {})


def test_reserved_concurrency_one_runs_invocations_one_after_the_other(invoker, deploy_probe):
    name = deploy_probe(reserved_concurrency=1)
    results = []

    def call() -> None:
        results.append(invoker.invoke(name, {"action": "sleep", "seconds": 0.3}).payload)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    earlier, later = sorted(results, key=lambda payload: payload["started"])
    assert earlier["finished"] <= later["started"]
    assert earlier["pid"] == later["pid"]  # one execution environment served both


def test_logs_reach_cloudwatch_logs_and_the_local_file(invoker, deploy_probe, aws_endpoint, tmp_path):
    name = deploy_probe()
    marker = f"hello-{uuid.uuid4().hex}"

    result = invoker.invoke(name, {"action": "log", "lines": [marker]})
    assert invoker.flush_logs(timeout=10)

    logs = aws_endpoint.client("logs")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    messages = [event["message"] for event in events]
    rid = result.request_id
    start = messages.index(f"START RequestId: {rid} Version: $LATEST")
    assert messages.index(marker) > start
    record = next(message for message in messages if "logged through the root logger" in message)
    assert record.startswith("[WARNING]\t") and f"\t{rid}\t" in record
    assert record.endswith("logged through the root logger\nsecond line of the same record")  # one event
    end = messages.index(f"END RequestId: {rid}")
    assert re.match(
        rf"REPORT RequestId: {rid}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\t"
        r"Max Memory Used: \d+ MB\t",
        messages[end + 1],
    )
    streams = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
    assert [stream["logStreamName"] for stream in streams] == [events[0]["logStreamName"]]
    assert f"START RequestId: {rid}" in (tmp_path / "logs" / f"lambda-{name}.log").read_text()


def test_logs_endpoint_outage_neither_blocks_nor_raises(tmp_path):
    shipper = LogShipper(f"http://127.0.0.1:{free_port()}", REGION, log_dir=tmp_path)
    try:
        shipper.ship("outage", "2024/01/01/[$LATEST]0", [(int(time.time() * 1000), "kept locally")])
        assert shipper.flush(timeout=30)
        assert shipper.dropped_events == 1
        assert "kept locally" in Path(tmp_path / "lambda-outage.log").read_text()
    finally:
        shipper.close()


def test_configuration_change_takes_effect_in_a_new_environment(invoker, deploy_probe, aws_endpoint):
    name = deploy_probe(environment={"SETTING": "before"})
    before = invoker.invoke(name, {"action": "environ"}).payload

    aws_endpoint.client("lambda").update_function_configuration(
        FunctionName=name, Environment={"Variables": {"SETTING": "after"}}
    )
    after = invoker.invoke(name, {"action": "environ"}).payload

    assert (before["environ"]["SETTING"], after["environ"]["SETTING"]) == ("before", "after")
    assert after["pid"] != before["pid"]
    assert not pid_alive(before["pid"])
