"""Send the OTLP output to a tracing backend: OTLP/HTTP with a JSON body (``--otlp-endpoint URL``).

Each line of :mod:`osflow.render.otlp` is one ``TracesData``, which is also the JSON form of an
``ExportTraceServiceRequest``: it is POSTed as it is to ``URL/v1/traces`` with ``Content-Type:
application/json`` (an OpenTelemetry Collector's ``otlp`` receiver on port 4318, Jaeger's, Tempo's
or any OTLP/HTTP receiver).  Only the standard library: :mod:`urllib.request`.

A failed POST does not stop the output: what was written stays written and the rest is still
written; the first failure is kept (:attr:`OtlpHttpExporter.error`, an
:class:`~osflow.errors.ExportError`) and nothing more is sent.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from .errors import ExportError, UsageError


def traces_url(endpoint: str) -> str:
    """The URL traces are POSTed to: ``endpoint`` + ``/v1/traces`` (unless it already ends so).

    >>> traces_url("http://collector:4318"), traces_url("http://c:4318/"), traces_url("https://c/otlp/v1/traces")
    ('http://collector:4318/v1/traces', 'http://c:4318/v1/traces', 'https://c/otlp/v1/traces')
    >>> traces_url("c:4318")
    Traceback (most recent call last):
    ...
    osflow.errors.UsageError: --otlp-endpoint wants an http:// or https:// URL, e.g. http://collector:4318, not 'c:4318'
    """
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"--otlp-endpoint wants an http:// or https:// URL, e.g. http://collector:4318, not {endpoint!r}"
        )
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


class OtlpHttpExporter:
    """POSTs OTLP/JSON lines to one endpoint, one request per line (per trace)."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.url = traces_url(endpoint)
        self.timeout = timeout
        self.sent = 0  #: lines the receiver accepted
        self.error: ExportError | None = None  #: the first failure; nothing is sent after it

    def send(self, line: str) -> None:
        """POST one ``TracesData`` line (nothing once a POST has failed)."""
        if self.error is not None:
            return
        request = urllib.request.Request(
            self.url, data=line.encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "osflow"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            detail = _detail(e.read() if e.fp is not None else b"")
            self.error = ExportError(f"{self.url}: the receiver answered {e.code} {e.reason}{detail}")
            return
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            self.error = ExportError(f"{self.url}: cannot send the traces: {reason}")
            return
        rejected = _rejected(body)
        if rejected:
            self.error = ExportError(f"{self.url}: the receiver rejected {rejected}")
            return
        self.sent += 1

    def tee(self, lines: Iterable[str]) -> Iterator[str]:
        """Yield each line, then send it (written first: a failed POST loses no output)."""
        for line in lines:
            yield line
            self.send(line)

    def send_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            if self.error is not None:
                return
            self.send(line)


def _detail(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return f": {text[:200]}" if text else ""


def _rejected(body: bytes) -> str:
    """What an ``ExportTraceServiceResponse``'s ``partialSuccess`` says was rejected ('' if nothing).

    >>> _rejected(b'{"partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad span"}}')
    '2 spans: bad span'
    >>> _rejected(b'{}'), _rejected(b''), _rejected(b'\\x0a\\x00')
    ('', '', '')
    """
    try:
        data = json.loads(body or b"{}")
    except ValueError:  # a protobuf or empty answer: nothing to say
        return ""
    partial = data.get("partialSuccess") if isinstance(data, dict) else None
    if not isinstance(partial, dict):
        return ""
    try:
        spans = int(partial.get("rejectedSpans") or 0)
    except (TypeError, ValueError):
        spans = 0
    if not spans:
        return ""
    message = partial.get("errorMessage")
    return f"{spans} spans" + (f": {message}" if message else "")
