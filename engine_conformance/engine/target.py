"""The one client for a target engine: unix socket, TCP, or TLS.

    >>> target = Target.parse("unix:///run/docker.sock")          # doctest: +SKIP
    >>> with Client(target) as client:                            # doctest: +SKIP
    ...     client.negotiate()
    ...     ex = client.create_image({"fromSrc": "-", "repo": "x/y"}, body=tar_bytes)
    ...     ex.status, ex.messages[-1].obj

Targets are given the way the docker CLI takes them (``unix://``, ``tcp://``,
``http://``, ``https://``) and default from ``DOCKER_HOST`` and then the
standard socket. ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` select TLS with
client certificates, ``DOCKER_API_VERSION`` pins the version. Every request has
a timeout, and a stream also has an overall deadline, so a hung engine gives
:class:`TargetError` rather than a hang.

An answer whose body ends before its end (the connection closed before a chunked
body's last chunk, or short of its Content-Length; RFC 9112 §8) is not an error
of the client: everything that arrived is kept, and ``exchange.incomplete`` says
what was missing. Judging that is PROGRESS-010's.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import httpx

from engine_conformance.base.exits import UsageError
from engine_conformance.base.redact import REDACTED
from engine_conformance.base.stream import FramingError, Message, StreamParser
from engine_conformance.base.versions import SPEC_VERSION, version_tuple

DEFAULT_SOCKET = "/var/run/docker.sock"
SECRET_HEADERS = ("x-registry-auth", "authorization")


class TargetError(Exception):
    """The target could not be reached or did not answer in time."""


@dataclass(frozen=True)
class TLS:
    """Client-side TLS material, as in ``DOCKER_CERT_PATH`` (ca.pem, cert.pem, key.pem)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True

    @classmethod
    def from_cert_path(cls, path: str, verify: bool = True) -> TLS:
        p = Path(path)
        missing = [n for n in ("ca.pem", "cert.pem", "key.pem") if not (p / n).is_file()]
        if missing and verify:
            raise UsageError(f"DOCKER_CERT_PATH {path} lacks {', '.join(missing)}")
        return cls(
            ca=str(p / "ca.pem") if (p / "ca.pem").is_file() else None,
            cert=str(p / "cert.pem") if (p / "cert.pem").is_file() else None,
            key=str(p / "key.pem") if (p / "key.pem").is_file() else None,
            verify=verify,
        )

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


@dataclass(frozen=True)
class Target:
    """Where the engine is. ``url`` is the normalised form shown in reports."""

    url: str
    base_url: str
    uds: str | None = None
    tls: TLS | None = None

    @classmethod
    def parse(cls, spec: str, env: Mapping[str, str] | None = None) -> Target:
        """Parse ``unix:///path``, ``/path``, ``tcp://h:p``, ``http(s)://h:p``.

        With ``DOCKER_TLS_VERIFY`` set (or an ``https://`` URL), TLS uses the
        certificates in ``DOCKER_CERT_PATH`` (default ``~/.docker``).
        """
        env = os.environ if env is None else env
        spec = spec.strip()
        if spec.startswith("/"):
            spec = "unix://" + spec
        parts = urlsplit(spec)
        scheme = parts.scheme.lower()
        if scheme == "unix":
            path = parts.path or parts.netloc
            if not path:
                raise UsageError(f"unix target without a socket path: {spec!r}")
            return cls(url=f"unix://{path}", base_url="http://engine", uds=path)
        if scheme not in ("tcp", "http", "https"):
            raise UsageError(
                f"unsupported target {spec!r}: use unix:///path, tcp://host:port or https://host:port"
            )
        if not parts.hostname:
            raise UsageError(f"target without a host: {spec!r}")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"bad port in target {spec!r}") from None
        want_tls = scheme == "https" or bool(env.get("DOCKER_TLS_VERIFY"))
        tls = None
        if want_tls:
            cert_path = env.get("DOCKER_CERT_PATH") or str(Path.home() / ".docker")
            tls = TLS.from_cert_path(cert_path, verify=True)
        port = port or (2376 if want_tls else 2375)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        http = "https" if tls else "http"
        return cls(url=f"{http}://{host}:{port}", base_url=f"{http}://{host}:{port}", tls=tls)

    def http_client(self, timeout: httpx.Timeout) -> httpx.Client:
        """A raw httpx client bound to this target (the proxy in tests forwards with it)."""
        kwargs: dict[str, Any] = {"retries": 0}
        if self.uds:
            kwargs["uds"] = self.uds
        if self.tls:
            kwargs["verify"] = self.tls.context()
        return httpx.Client(
            base_url=self.base_url, transport=httpx.HTTPTransport(**kwargs), timeout=timeout
        )

    @classmethod
    def default(cls, env: Mapping[str, str] | None = None) -> Target | None:
        """``DOCKER_HOST``, else the standard socket if it exists, else None."""
        env = os.environ if env is None else env
        if env.get("DOCKER_HOST"):
            return cls.parse(env["DOCKER_HOST"], env)
        if Path(DEFAULT_SOCKET).exists():
            return cls.parse("unix://" + DEFAULT_SOCKET, env)
        return None


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to show: secrets replaced by a marker."""
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


@dataclass(repr=False)
class Exchange:
    """One request and what came back: the evidence a verdict shows.

    ``messages``/``framing_errors`` come from the stream parser; ``timed_out``
    is set when the overall deadline cut the body short. ``incomplete`` says why
    the message ended before its end (RFC 9112 §8: a chunked body without its
    last chunk, a body short of its Content-Length, a connection that broke
    mid-body); empty when the message arrived whole. What did arrive is kept.
    """

    method: str
    path: str
    params: list[tuple[str, str]]
    request_headers: dict[str, str]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    messages: list[Message] = field(default_factory=list)
    framing_errors: list[FramingError] = field(default_factory=list)
    started: float = 0.0
    first_byte: float | None = None
    finished: float | None = None
    timed_out: bool = False
    stopped: bool = False  # the client hung up because ``until`` held
    reason: str = ""  # the status line's reason phrase
    incomplete: str = ""  # what the message lacked when the connection ended it; "" if whole
    # What a reproducer needs besides the evidence: the body as sent (up to BODY_KEPT
    # bytes; its size always) and what the client's context providers said when it was sent.
    request_body: bytes | None = field(default=None, repr=False)
    request_body_size: int = 0
    context: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        # Short, and without headers: pytest prints reprs in failure output,
        # and request headers may carry credentials.
        return f"<Exchange {self.request_line} -> {self.status}>"

    @property
    def request_line(self) -> str:
        query = urlencode(self.params)
        return f"{self.method} {self.path}{'?' + query if query else ''}"

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def framing(self) -> str:
        """How the body is delimited (RFC 9112 §6.3): ``chunked``, ``content-length``, ``close``."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return "chunked"
        if "content-length" in self.headers:
            return "content-length"
        return "close"

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    @property
    def stream_error(self) -> str | None:
        """The error of the last error message in a 200 stream, else None."""
        for message in reversed(self.messages):
            if message.error is not None:
                return message.error
        return None

    def evidence(self, max_messages: int = 5) -> dict[str, Any]:
        body_text = self.body[:500].decode("utf-8", "replace") if not self.messages else None
        return {
            "request": self.request_line,
            "request_headers": redact_headers(self.request_headers),
            "status": self.status,
            "headers": {k: v for k, v in self.headers.items() if k.lower() != "set-cookie"},
            "first_messages": [m.obj for m in self.messages[:max_messages]],
            "last_message": self.messages[-1].obj if len(self.messages) > max_messages else None,
            "message_count": len(self.messages),
            "framing_errors": [f"{e.offset}: {e.detail}" for e in self.framing_errors],
            "body": body_text,
            "timed_out": self.timed_out,
            "incomplete": self.incomplete or None,
        }


#: The largest request body an exchange keeps for a reproducer (the suites send small ones).
BODY_KEPT = 4 << 20


@dataclass(frozen=True)
class Timeouts:
    """Per-operation timeouts (seconds); ``stream`` bounds a whole progress stream."""

    connect: float = 5.0
    read: float = 60.0
    stream: float = 300.0


class Client:
    """The harness's single way of talking to an engine.

    ``api_version`` pins the version; otherwise :meth:`negotiate` picks the lower
    of the spec's version (1.44) and the engine's maximum. Every exchange is
    recorded in ``exchanges`` so that a verdict can show its evidence.
    """

    def __init__(
        self,
        target: Target,
        api_version: str | None = None,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self.target = target
        self.pinned = api_version
        self.api_version = api_version or SPEC_VERSION
        self.timeouts = timeouts
        self.exchanges: list[Exchange] = []
        #: Image IDs (without ``sha256:``) that another connection of the run may create
        #: at any moment (a lane's, :mod:`engine_conformance.run.lane`): left out of
        #: :meth:`list_images`, so a check's before/after view shows only its own.
        self.unseen: set[str] = set()
        #: name -> a callable whose value each exchange keeps in ``context`` as it is sent
        #: (the lab registry's content, for reproducers). Cheap: called for every request.
        self.context: dict[str, Callable[[], Any]] = {}
        self.version_info: dict[str, Any] = {}
        self._http = target.http_client(httpx.Timeout(timeouts.read, connect=timeouts.connect))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- versions -------------------------------------------------------------

    def negotiate(self) -> str:
        """Ping the engine and settle the API version; raises TargetError if unreachable."""
        ping = self.request("GET", "/_ping", versioned=False)
        if ping.status != 200:
            raise TargetError(f"{self.target.url} answered /_ping with HTTP {ping.status}")
        version = self.request("GET", "/version", versioned=False)
        info = version.json() if version.status == 200 else {}
        return self.adopt(info if isinstance(info, dict) else {}, ping.headers.get("api-version"))

    def adopt(self, version_info: dict[str, Any], ping_version: str | None = None) -> str:
        """Settle the API version from a ``/version`` answer read before (by
        ``engine-conformance run``, for its child run), sending nothing."""
        self.version_info = dict(version_info)
        engine_max = self.version_info.get("ApiVersion") or ping_version
        if not self.pinned:
            chosen = SPEC_VERSION
            if engine_max and version_tuple(engine_max) < version_tuple(SPEC_VERSION):
                chosen = engine_max
            self.api_version = chosen
        return self.api_version

    def cite(self, exchanges: Iterable[Exchange]) -> None:
        """Log exchanges made earlier, or on a connection of their own, as evidence
        of the check now running (the report shows what a check logged)."""
        self.exchanges.extend(exchanges)

    def path(self, path: str, versioned: bool = True, version: str | None = None) -> str:
        if not versioned:
            return path
        return f"/v{version or self.api_version}{path}"

    # -- requests ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        versioned: bool = True,
        version: str | None = None,
        deadline: float | None = None,
        until: Callable[[Message], bool] | None = None,
        log: bool = True,
    ) -> Exchange:
        """Send one request and read the whole answer (parsing it as a stream).

        ``path`` is unversioned (``/images/create``); ``version`` overrides the
        negotiated one for this request. The body is read until EOF or until
        ``deadline`` seconds (default ``timeouts.stream``) have passed.

        With ``until``, reading stops at the first stream message of a 200
        answer for which it holds, and the connection is closed: a hang-up the
        engine sees (``exchange.stopped``). Running out of time is then an
        outcome (``exchange.timed_out``), not an error. ``log=False`` keeps the
        exchange out of ``exchanges`` (the check's evidence).
        """
        full_path = self.path(path, versioned, version)
        pairs = _pairs(params)
        exchange = Exchange(method, full_path, pairs, dict(headers or {}))
        if content is not None:
            exchange.request_body_size = len(content)
            exchange.request_body = content if len(content) <= BODY_KEPT else None
        exchange.context = {name: provide() for name, provide in self.context.items()}
        if log:
            self.exchanges.append(exchange)
        limit = self.timeouts.stream if deadline is None else deadline
        exchange.started = time.monotonic()
        parser = StreamParser()
        body = bytearray()
        # An httpx stream left before its end is closed, not pooled: the hang-up.
        timeout = httpx.Timeout(limit, connect=self.timeouts.connect) if until else None
        try:
            with self._http.stream(
                method,
                full_path,
                params=httpx.QueryParams(cast(Any, pairs)),  # httpx types its list invariantly
                headers=headers,
                content=content,
                timeout=timeout or httpx.USE_CLIENT_DEFAULT,
            ) as response:
                exchange.status = response.status_code
                exchange.reason = response.reason_phrase
                exchange.headers = {k.lower(): v for k, v in response.headers.items()}
                try:
                    for chunk in response.iter_raw():
                        now = time.monotonic()
                        if exchange.first_byte is None:
                            exchange.first_byte = now
                        body += chunk
                        new = parser.feed(chunk, now)
                        if until and exchange.status == 200 and any(until(m) for m in new):
                            exchange.stopped = True
                            break
                        if now - exchange.started > limit:
                            exchange.timed_out = True
                            break
                except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    # The head arrived and the body ended early: the engine's incomplete
                    # message (RFC 9112 §8), recorded as such; a timeout is still a hang.
                    exchange.incomplete = _incomplete(exchange, len(body), exc)
        except httpx.TimeoutException as exc:
            if until is not None:
                exchange.timed_out = True
            else:
                raise TargetError(
                    f"{self.target.url} did not answer {exchange.request_line} in time"
                    f" ({exc.__class__.__name__})"
                ) from None
        except (httpx.TransportError, OSError) as exc:
            raise TargetError(f"cannot reach {self.target.url}: {_reason(exc)}") from None
        parser.close(cut=bool(exchange.incomplete))
        if parser.cut_line:
            exchange.incomplete += (
                f"; it ends inside a line ({len(parser.cut_line)} bytes: "
                f"{parser.cut_line[:60]!r}), which is not judged as one"
            )
        exchange.finished = time.monotonic()
        exchange.body = bytes(body)
        if exchange.content_type.startswith("application/json") or exchange.status == 200:
            exchange.messages = parser.messages
            exchange.framing_errors = parser.errors
        if exchange.timed_out and until is None:
            raise TargetError(
                f"{self.target.url} kept {exchange.request_line} open past {limit:.0f}s"
            )
        return exchange

    def create_image(
        self,
        params: Mapping[str, Any] | list[tuple[str, str]],
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        version: str | None = None,
        versioned: bool = True,
        deadline: float | None = None,
        until: Callable[[Message], bool] | None = None,
    ) -> Exchange:
        """``POST /images/create``. A body is sent as ``application/octet-stream``."""
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/octet-stream")
        return self.request(
            "POST",
            "/images/create",
            params=params,
            headers=hdrs,
            content=body,
            version=version,
            versioned=versioned,
            deadline=deadline,
            until=until,
        )

    # -- observation calls (not judged, only read) -------------------------------

    def inspect_image(
        self, name: str, *, platform: str | Mapping[str, str] | None = None, manifests: bool = False
    ) -> dict[str, Any] | None:
        """``GET /images/{name}/json``; None when the engine answers 404.

        ``platform`` asks for the view of one platform of a multi-platform image
        (``platform=<JSON-encoded OCI platform>``, API 1.49 on): ``"linux/arm64/v8"``
        or an OCI platform object (``{"os": ..., "architecture": ..., "variant": ...}``).
        ``manifests`` asks for the ``Manifests`` list (``manifests=1``, API 1.48 on).
        The document makes them mutually exclusive. An engine that does not serve
        them ignores them (the Versioning rule) and answers the default view.
        """
        if platform is not None and manifests:
            raise ValueError("platform and manifests are mutually exclusive (API v1.49)")
        params: dict[str, str] = {}
        if platform is not None:
            params["platform"] = oci_platform_json(platform)
        if manifests:
            params["manifests"] = "1"
        ex = self._observe("GET", f"/images/{name}/json", params=params or None)
        if ex.status == 404:
            return None
        if ex.status != 200:
            raise TargetError(
                f"inspect {name}"
                + (f" ({urlencode(params)})" if params else "")
                + f": HTTP {ex.status}: {ex.body[:200]!r}"
            )
        inspected: dict[str, Any] = ex.json()
        return inspected

    def history(self, name: str) -> list[dict[str, Any]]:
        ex = self._observe("GET", f"/images/{name}/history")
        if ex.status != 200:
            raise TargetError(f"history {name}: HTTP {ex.status}")
        layers: list[dict[str, Any]] = ex.json()
        return layers

    def list_images(self) -> list[dict[str, Any]]:
        ex = self._observe("GET", "/images/json", params={"all": "1"})
        if ex.status != 200:
            raise TargetError(f"list images: HTTP {ex.status}")
        images: list[dict[str, Any]] = ex.json()
        if self.unseen:
            unseen = self.unseen
            images = [
                i for i in images if str(i.get("Id", "")).removeprefix("sha256:") not in unseen
            ]
        return images

    def delete_image(self, name: str, force: bool = True) -> int:
        """``DELETE /images/{name}``; returns the status (404 is fine: already gone)."""
        ex = self._observe(
            "DELETE", f"/images/{name}", params={"force": "1" if force else "0", "noprune": "0"}
        )
        return ex.status

    def info(self) -> dict[str, Any]:
        ex = self._observe("GET", "/info")
        return ex.json() if ex.status == 200 else {}

    def _observe(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> Exchange:
        # Observation calls are not evidence of the endpoint under test, so
        # they are kept out of the exchange log.
        return self.request(method, path, params=params, deadline=self.timeouts.read, log=False)


def oci_platform_json(platform: str | Mapping[str, str]) -> str:
    """The JSON-encoded OCI platform (``{"os":"linux","architecture":"arm64","variant":"v8"}``)
    of ``os[/arch[/variant]]`` or of an OCI platform object, as the Engine API takes it."""
    import json

    if isinstance(platform, str):
        keys = ("os", "architecture", "variant")
        obj = {k: v for k, v in zip(keys, platform.split("/"), strict=False) if v}
    else:
        obj = {k: v for k, v in platform.items() if v}
    return json.dumps(obj, separators=(",", ":"))


def _pairs(params: Mapping[str, Any] | list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Query pairs; list values become repeated keys (as ``changes`` is sent)."""
    if params is None:
        return []
    if isinstance(params, list):
        return [(str(k), str(v)) for k, v in params]
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, list | tuple):
            pairs.extend((key, str(v)) for v in value)
        elif value is not None:
            pairs.append((key, str(value)))
    return pairs


def _incomplete(exchange: Exchange, received: int, exc: BaseException) -> str:
    """What an answer whose body ended early lacked, in the words of RFC 9112 §8."""
    declared = exchange.headers.get("content-length", "")
    if isinstance(exc, httpx.ReadError):
        how = f"the connection broke ({_reason(exc)})"
    else:
        how = "the connection closed"
    if exchange.framing == "chunked":
        if isinstance(exc, httpx.RemoteProtocolError) and "incomplete chunked read" not in str(exc):
            return (
                f"its chunked body could not be decoded after {received} bytes ({exc}), "
                "so it never reached its last chunk"
            )
        return (
            f"{how} after {received} body bytes, before the chunked body's last chunk "
            "(0\\r\\n\\r\\n)"
        )
    if exchange.framing == "content-length" and declared.strip().isdigit():
        return (
            f"{how} after {received} of the {int(declared)} body bytes its Content-Length declared"
        )
    return f"{how} after {received} body bytes, before the end of the message ({exc})"


def _reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(exc) or exc.__class__.__name__
