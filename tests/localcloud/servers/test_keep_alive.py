"""localcloud/servers/keep_alive.py: werkzeug's threaded server, with the keep-alive handler, on a loopback port;
requests over real sockets. A connection stays open only when every answer on it is exactly as long as it says
and no request body is left unread."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from localcloud.servers.keep_alive import keep_alive_handler


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """/echo answers the body; /ignore leaves it unread; /broken declares 100 bytes, sends 5, then fails."""
    path = environ["PATH_INFO"]
    if path == "/broken":
        start_response("200 OK", [("Content-Length", "100")])

        def failing() -> Iterator[bytes]:
            yield b"first"
            raise RuntimeError("the answer broke off")

        return failing()
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) if path == "/echo" else b"ignored"
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    made = make_server("127.0.0.1", 0, app, threaded=True, request_handler=keep_alive_handler(WSGIRequestHandler))
    thread = threading.Thread(target=made.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", made.server_port
    made.shutdown()
    made.server_close()


def call(conn: http.client.HTTPConnection, path: str, body: bytes = b"", **headers: str) -> tuple[int, bytes, str]:
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read(), response.getheader("Connection", "")


def test_requests_share_one_connection_even_when_a_body_is_left_unread(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=10)
    assert call(conn, "/echo", b'{"a": 1}') == (200, b'{"a": 1}', "")
    sock = conn.sock
    assert call(conn, "/ignore", b"x" * 70_000) == (200, b"ignored", "")  # its body must not read as a request
    assert call(conn, "/echo", b"second") == (200, b"second", "")
    assert conn.sock is sock  # http.client reconnects silently when the server closes: it did not
    conn.close()


def test_a_client_that_asks_for_close_gets_it(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=10)
    assert call(conn, "/echo", b"bye", Connection="close") == (200, b"bye", "close")
    conn.close()


def test_a_chunked_upload_is_served_as_werkzeug_does_and_closes(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=10)
    conn.request("POST", "/echo", body=iter([b"chunk"]), encode_chunked=True)
    response = conn.getresponse()
    assert (response.status, response.getheader("Connection")) == (200, "close")
    conn.close()


def test_a_body_sent_after_100_continue_is_served_as_werkzeug_does_and_closes(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as raw:
        raw.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        received = b""
        while not received.endswith(b"\r\n\r\n"):  # the interim answer, which may come in pieces
            received += raw.recv(1)
        assert received == b"HTTP/1.1 100 Continue\r\n\r\n"
        raw.sendall(b"body")
        while chunk := raw.recv(65536):  # ends only when the server closes the connection
            received += chunk
    answer = received
    while answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):  # http.server and werkzeug each send one
        answer = answer.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\nbody")


def test_an_answer_that_breaks_off_closes_the_connection(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as raw:
        raw.sendall(b"POST /broken HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        received = b""
        while chunk := raw.recv(65536):  # ends only when the server closes the connection
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK") and b"first" in received


def test_a_request_refused_after_a_kept_one_says_it_closes(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as raw:
        raw.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        raw.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n")  # http.server refuses it itself
        received = b""
        while chunk := raw.recv(65536):  # ends only when the server closes the connection
            received += chunk
    first, _, second = received.partition(b"\r\n\r\nok")
    assert first.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" not in first
    assert second.startswith(b"HTTP/1.1 431") and b"Connection: close" in second
