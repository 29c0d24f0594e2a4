"""Who may drive the local cloud over HTTP: the pure checks, the WSGI guard on a fake app, and the real AWS
endpoint started with LOCALCLOUD_CORS_ALLOWED_ORIGINS."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from localcloud.servers.procs import free_port, terminate_group
from localcloud.servers.request_guard import (
    RequestGuard,
    caller_origin,
    has_bearer_token,
    is_loopback_host,
    origin_of,
    parse_allowed_origins,
    refusal,
)
from tests.fixtures.aws import AwsEndpoint, start_moto

# A SigV4-looking header is all moto needs to route `GET /` to S3 ListBuckets.
S3_AUTH = {"Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, Signature=x"}


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:4566", "LOCALHOST", "127.0.0.1", "127.0.0.1:4567", "127.1.2.3:80", "[::1]", "[::1]:4566",
     "bucket.localhost:4566", "localhost.localstack.cloud:4566", "s3.localhost.localstack.cloud", "localhost."],
)  # fmt: skip
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [None, "", "evil.example", "evil.example:4567", "localhost.evil.example", "evillocalhost", "10.0.0.1:4566",
     "0.0.0.0", "[::2]:80", "[::ffff:10.0.0.1]", "127.0.0.1.evil.example", "localstack.cloud"],
)  # fmt: skip
def test_other_hosts(host):
    assert not is_loopback_host(host)


def test_origins_are_scheme_host_and_port_only():
    assert origin_of("http://LocalHost:3000/app/page?x=1#y") == "http://localhost:3000"
    assert origin_of("https://[::1]/") == "https://[::1]"
    assert origin_of("null") is None
    assert origin_of("http://host:notaport") is None


def test_a_browser_request_says_where_it_comes_from():
    assert caller_origin(None, None) is None  # SDKs, CLIs, Terraform
    assert caller_origin("http://evil.example", "http://localhost/") == "http://evil.example"  # Origin wins
    assert caller_origin(None, "http://evil.example/page.html") == "http://evil.example"
    assert caller_origin("null", None) == "null"  # sandboxed frames and file:// pages
    assert caller_origin(None, "not a url") == "null"


def test_refusal_names_what_is_refused():
    assert refusal("127.0.0.1:4566", None, None) is None
    assert refusal("localhost:4566", "http://localhost:3000", None) is None
    assert "Host 'evil.example:4566'" in refusal("evil.example:4566", None, None)
    assert "'http://evil.example'" in refusal("127.0.0.1", "http://evil.example", None)
    assert "'http://evil.example'" in refusal("127.0.0.1", None, "http://evil.example/x")
    assert refusal("127.0.0.1", "null", None) is not None
    assert refusal("127.0.0.1", "chrome-extension://localhost", None) is not None  # only http(s) pages
    assert refusal("evil.example", None, None, check_host=False) is None
    allowed = frozenset({"https://tool.example"})
    assert refusal("127.0.0.1", "https://tool.example", None, allowed) is None
    assert refusal("127.0.0.1", "http://tool.example", None, allowed) is not None  # another scheme: another origin


def test_allowed_origins_setting():
    assert parse_allowed_origins("") == frozenset()
    assert parse_allowed_origins(" https://a.example , http://b.example:8080/ ") == {
        "https://a.example",
        "http://b.example:8080",
    }
    for wrong in ("*", "a.example", "https://a.example/path", "null"):
        with pytest.raises(ValueError, match="LOCALCLOUD_CORS_ALLOWED_ORIGINS"):
            parse_allowed_origins(wrong)


def test_bearer_token():
    assert has_bearer_token("Bearer s3cret", "s3cret")
    assert has_bearer_token("bearer  s3cret ", "s3cret")
    assert not has_bearer_token(None, "s3cret")
    assert not has_bearer_token("Bearer s3cre", "s3cret")
    assert not has_bearer_token("Basic s3cret", "s3cret")
    assert not has_bearer_token("Bearer ", "")  # no token configured: nothing passes


class FakeApp:
    """A WSGI app answering like moto with flask_cors: any Origin echoed, or `*`."""

    def __init__(self, allow_origin: str = "*") -> None:
        self.calls = 0
        self.allow_origin = allow_origin

    def __call__(self, environ, start_response):
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Access-Control-Allow-Origin", self.allow_origin)])
        return [b"moto"]


def call(app, method="GET", **headers) -> tuple[str, dict[str, str], bytes]:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/", "HTTP_HOST": "127.0.0.1:4566"}
    environ.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


def test_guard_refuses_a_foreign_page_before_the_app_sees_it():
    app = FakeApp()
    status, headers, body = call(RequestGuard(app, frozenset(), check_host=True), origin="http://evil.example")
    assert status.startswith("403")
    assert "Access-Control-Allow-Origin" not in headers
    assert b"http://evil.example" in body and b"LOCALCLOUD_CORS_ALLOWED_ORIGINS" in body
    assert app.calls == 0


def test_guard_refuses_a_rebound_host_unless_told_not_to_check_it():
    app = FakeApp()
    assert call(RequestGuard(app, frozenset(), check_host=True), host="evil.example:4566")[0].startswith("403")
    assert call(RequestGuard(app, frozenset(), check_host=False), host="evil.example:4566")[0] == "200 OK"
    assert app.calls == 1


def test_guard_never_passes_a_wildcard_and_echoes_only_the_caller():
    guard = RequestGuard(FakeApp("*"), frozenset(), check_host=True)
    _, without_origin, body = call(guard)
    assert body == b"moto"
    assert not any(name.startswith("Access-Control-") for name in without_origin)
    _, local, _ = call(guard, origin="http://localhost:3000")
    assert local["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert local["Vary"] == "Origin"
    assert "ETag" in local["Access-Control-Expose-Headers"]


def test_guard_answers_preflights_of_allowed_origins_itself():
    app = FakeApp()
    guard = RequestGuard(app, frozenset({"https://tool.example"}), check_host=True)
    status, headers, _ = call(
        guard, "OPTIONS", origin="https://tool.example", access_control_request_method="PUT",
        access_control_request_headers="authorization,x-amz-date",
    )  # fmt: skip
    assert status == "200 OK"
    assert headers["Access-Control-Allow-Origin"] == "https://tool.example"
    assert "PUT" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "authorization,x-amz-date"
    assert app.calls == 0
    refused, _, _ = call(guard, "OPTIONS", origin="https://other.example", access_control_request_method="PUT")
    assert refused.startswith("403")


@pytest.fixture(scope="module")
def endpoint_with_extra_origin() -> Iterator[AwsEndpoint]:
    port = free_port()
    proc = start_moto(port, env={"LOCALCLOUD_CORS_ALLOWED_ORIGINS": "https://tool.example"})
    try:
        yield AwsEndpoint(f"http://127.0.0.1:{port}", proc)
    finally:
        terminate_group(proc.pid)
        proc.wait(timeout=10)


def test_the_endpoint_serves_an_allowed_browser_tool(endpoint_with_extra_origin):
    url = endpoint_with_extra_origin.url
    endpoint_with_extra_origin.client("s3").create_bucket(Bucket="tool-bucket")

    listed = requests.get(url, headers={**S3_AUTH, "Origin": "https://tool.example"}, timeout=10)
    preflight = requests.options(
        url + "/tool-bucket/key",
        headers={"Origin": "https://tool.example", "Access-Control-Request-Method": "PUT"},
        timeout=10,
    )
    foreign = requests.get(url, headers={**S3_AUTH, "Origin": "https://other.example"}, timeout=10)

    assert listed.status_code == 200 and b"tool-bucket" in listed.content
    assert listed.headers["Access-Control-Allow-Origin"] == "https://tool.example"
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://tool.example"
    assert foreign.status_code == 403
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_the_endpoint_refuses_to_start_with_a_malformed_origin_setting():
    started = subprocess.run(
        [sys.executable, "-m", "localcloud.servers.aws_endpoint", "--port", str(free_port())],
        env={"LOCALCLOUD_CORS_ALLOWED_ORIGINS": "*", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode != 0
    assert "LOCALCLOUD_CORS_ALLOWED_ORIGINS: '*' is not an origin" in started.stderr
