"""HTTP/1.1 keep-alive for the AWS endpoint's werkzeug server.

Werkzeug's development server answers every request with `Connection: close`, because http.server does not
drain a request body the application left unread before reading the next request line. So every call of every
client (the rules engine's PutRecords, the event source mapping's GetRecords, the Lambda log shipper, each
function's SDK calls) opened a TCP connection, and the endpoint started a thread for it (see the README's
benchmark notes for what that cost).

Here a request with a Content-Length (every AWS SDK request; at most MAX_BUFFERED_BODY bytes) has its whole
body read before the application runs, and is answered on a connection that stays open, unless the client asked
for `Connection: close`, spoke HTTP/1.0, or werkzeug itself closes it (an error it could not answer). Anything
else (a chunked upload, `Expect: 100-continue`, a larger body) is served as werkzeug does, and closes the
connection. An answer's headers and body go out in one send. Each request is still checked on its own by the
request guard.
"""

from __future__ import annotations

import io
from typing import Any

# Larger bodies (S3 uploads) stream to the application as werkzeug passes them, on a connection then closed.
MAX_BUFFERED_BODY = 16 * 1024 * 1024


class _BufferedAnswer:
    """The connection's write side, holding what is written until werkzeug flushes (headers and body then go in
    one send, where they took two) and counting it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.held: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.held.append(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        if self.held:
            self.raw.write(b"".join(self.held))
            self.held.clear()
        self.raw.flush()


def keep_alive_handler(base: type) -> type:
    """A subclass of werkzeug's request handler `base` that keeps connections open (see the module docstring)."""

    class KeepAliveRequestHandler(base):
        protocol_version = "HTTP/1.1"
        # An answer's headers and body are separate writes: with Nagle's algorithm, the body of an answer on an
        # open connection waits for the client's delayed ACK of the headers (40 ms).
        disable_nagle_algorithm = True
        _keep_open = False

        def run_wsgi(self) -> None:
            length = self.headers.get("Content-Length", "")
            self._keep_open = (
                length.isdigit()
                and int(length) <= MAX_BUFFERED_BODY
                and "Transfer-Encoding" not in self.headers
                and "Expect" not in self.headers  # 100-continue: the body comes after werkzeug's interim answer
                and self.request_version == "HTTP/1.1"
                and self.headers.get("Connection", "").lower() != "close"
            )
            if not self._keep_open:
                super().run_wsgi()
                return
            connection, answer = self.rfile, self.wfile
            body = connection.read(int(length))
            if len(body) < int(length):  # the client went away mid-body
                self.close_connection = True
                return
            self.rfile, self.wfile = io.BytesIO(body), _BufferedAnswer(answer)
            self._declared_length: int | None = None
            self._body_from = 0
            try:
                super().run_wsgi()
                self.wfile.flush()  # a client gone by now: werkzeug's handle() drops the connection
            finally:
                sent = self.wfile.written - self._body_from
                self.rfile, self.wfile = connection, answer
                self._keep_open = False  # what http.server answers itself (a malformed request) closes, as it says
            # An answer that is not exactly as long as it said (werkzeug's error path after the status went out):
            # what follows on this connection could not be told apart from it.
            if self._declared_length is None or sent != self._declared_length:
                self.close_connection = True

        def send_header(self, keyword: str, value: Any) -> None:
            if self._keep_open:
                if keyword.lower() == "content-length" and str(value).isdigit():
                    self._declared_length = int(value)
                # werkzeug's "Connection: close" on every answer (and http.server's close_connection with it)
                if keyword.lower() == "connection" and str(value).lower() == "close":
                    return
            super().send_header(keyword, value)

        def end_headers(self) -> None:
            super().end_headers()
            if self._keep_open:
                self._body_from = self.wfile.written

    return KeepAliveRequestHandler
