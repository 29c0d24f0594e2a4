"""Who may drive the local cloud over HTTP: programs on this machine, not the web pages its browser shows.

A browser lets any page send GETs and simple POSTs (a `text/plain` body needs no preflight) to 127.0.0.1, and
after DNS rebinding a page's own host name points at 127.0.0.1 as well. Both leave a trace in the headers: the
page's `Origin` (or, without it, `Referer`) names a foreign site, and after rebinding `Host` is that site's name
instead of a loopback one. SDKs, CLIs and Terraform send no `Origin` and address the server by a loopback name,
so they pass unchanged. The checks are pure functions used by the runtime's control API and by `RequestGuard`,
the WSGI middleware in front of moto (the AWS endpoint).
"""

from __future__ import annotations

import hmac
import ipaddress
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

ALLOWED_ORIGINS_ENV = "LOCALCLOUD_CORS_ALLOWED_ORIGINS"
# RFC 6761: browsers and resolvers map every *.localhost name to loopback. localhost.localstack.cloud and its
# subdomains resolve to 127.0.0.1 publicly; LocalStack's tools (awslocal for S3) address the endpoint by them.
_LOOPBACK_DOMAINS = ("localhost", "localhost.localstack.cloud")
_PREFLIGHT_METHODS = "GET, HEAD, PUT, POST, DELETE, PATCH, OPTIONS"
# What a browser tool (the AWS SDK for JavaScript, an S3 browser) reads from responses besides the basic headers.
_EXPOSED_HEADERS = (
    "ETag, x-amz-request-id, x-amz-id-2, x-amzn-RequestId, x-amzn-ErrorType, x-amz-version-id, "
    "x-amz-delete-marker, x-amz-function-error, x-amz-log-result, x-amz-executed-version"
)


def host_name(host: str) -> str:
    """The name or address in a Host header or URL authority, without port and IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return host.split(":", 1)[0]
    return host


def is_loopback_host(host: str | None) -> bool:
    """True for localhost (and *.localhost), 127.0.0.0/8 and ::1, with or without a port."""
    name = host_name(host or "").rstrip(".")
    if any(name == domain or name.endswith("." + domain) for domain in _LOOPBACK_DOMAINS):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an Origin or Referer value; None when it has none (`null`, garbage)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def parse_allowed_origins(value: str) -> frozenset[str]:
    """The comma-separated origins of LOCALCLOUD_CORS_ALLOWED_ORIGINS; ValueError names a malformed one."""
    origins = set()
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        origin = origin_of(entry)
        if origin is None or origin != entry.lower().rstrip("/"):
            raise ValueError(f"{ALLOWED_ORIGINS_ENV}: {entry!r} is not an origin (scheme://host[:port], no path)")
        origins.add(origin)
    return frozenset(origins)


def caller_origin(origin: str | None, referer: str | None) -> str | None:
    """The origin a browser says the request comes from: Origin, else the Referer's; None from other programs."""
    if origin is not None:
        return origin_of(origin) or origin.strip() or "null"
    if referer:
        return origin_of(referer) or "null"
    return None


def is_loopback_origin(origin: str) -> bool:
    parts = urllib.parse.urlsplit(origin)
    return parts.scheme in {"http", "https"} and is_loopback_host(parts.netloc)


def refusal(
    host: str | None,
    origin: str | None,
    referer: str | None,
    allowed_origins: frozenset[str] = frozenset(),
    *,
    check_host: bool = True,
) -> str | None:
    """Why a request must be refused (403), or None: a foreign Host (DNS rebinding) or a foreign web page."""
    if check_host and not is_loopback_host(host):
        return (
            f"Host {host or '(none)'!r} is not a loopback name: address the local cloud as 127.0.0.1 or localhost "
            "(a web page that rebinds its own name to 127.0.0.1 is refused this way)"
        )
    source = caller_origin(origin, referer)
    if source is None or source in allowed_origins or is_loopback_origin(source):
        return None
    return f"requests from the web page origin {source!r} are refused; allow it with {ALLOWED_ORIGINS_ENV}"


StartResponse = Callable[..., Any]


class RequestGuard:
    """WSGI middleware: refuses what `refusal` refuses before the wrapped app sees it, answers CORS preflights
    of allowed origins itself, and lets CORS headers name the requesting origin only (never `*`)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], allowed_origins: frozenset[str], *, check_host: bool):
        self.app = app
        self.allowed_origins = allowed_origins
        self.check_host = check_host

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        origin_header = environ.get("HTTP_ORIGIN")
        reason = refusal(
            environ.get("HTTP_HOST"), origin_header, environ.get("HTTP_REFERER"), self.allowed_origins,
            check_host=self.check_host,
        )  # fmt: skip
        if reason:
            body = f"403 Forbidden: {reason}\n".encode()
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body)))])  # fmt: skip
            return [body]
        origin = caller_origin(origin_header, None)
        if origin and environ.get("REQUEST_METHOD") == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
            headers = [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Methods", _PREFLIGHT_METHODS),
                ("Access-Control-Allow-Headers", environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")),
                ("Access-Control-Max-Age", "600"),
                ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
                ("Content-Length", "0"),
            ]
            start_response("200 OK", headers)
            return [b""]

        def start_with_own_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # moto (flask_cors) and S3 bucket CORS rules may answer any origin, or `*`: only ours are sent.
            kept = [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]
            if origin:
                kept += [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", _EXPOSED_HEADERS)]
                if not any(name.lower() == "vary" and "origin" in value.lower() for name, value in kept):
                    kept.append(("Vary", "Origin"))
            return start_response(status, kept, exc_info)

        return self.app(environ, start_with_own_cors)


def has_bearer_token(authorization: str | None, token: str) -> bool:
    """Does an Authorization header carry `Bearer <token>`? Compared in constant time; never with an empty token."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
