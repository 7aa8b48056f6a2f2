"""HTTP/1.1 over a plain TCP socket, for the one exchange OTLP/HTTP makes:
a POST with a body, then an answer's status, headers and body
(Content-Length, chunked, or up to the close).

For ``http://`` receivers only; ``https://`` goes through the standard
library's http.client (rqa_otel.export.otlp.transport). http.client would
do here too, but it imports the email package and ssl: ~10 ms of every
start-up of a process that sends its first export at exit. The request is
what http.client writes (Host, Accept-Encoding: identity, Content-Length,
then the headers, checked by http.client's own rules) and the answer is
read by http.client's rules (interim 1xx answers skipped, no body for 204
and 304, HTTP/1.0 and ``Connection: close`` close the connection).
"""

from __future__ import annotations

import re
import socket
from typing import Mapping

_MAX_LINE = 65536
_MAX_HEADERS = 100
# http.client's checks of a header's name and value (no line breaks: a value
# must not forge a header or a request of its own).
_LEGAL_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_VALUE = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search


class ProtocolError(ConnectionError):
    """The receiver's answer is not HTTP/1.x as this client reads it."""


class PlainHttpConnection:
    """One kept-alive connection to ``host:port`` (``connect()`` opens it,
    ``close()`` ends it; ``sock`` is None while closed). ``timeout`` bounds
    the connect; the caller sets the socket's timeout for the exchange."""

    def __init__(self, host: str, port: int | None) -> None:
        self.host = host
        self.port = 80 if port is None else port
        self.timeout: float | None = None
        self.sock: socket.socket | None = None
        self._file = None
        try:
            shown = host.encode("ascii")
        except UnicodeEncodeError:
            shown = host.encode("idna")
        if b":" in shown:
            shown = b"[" + shown + b"]"  # an IPv6 address
        self._host = shown if self.port == 80 else shown + b":%d" % self.port

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self.sock.makefile("rb")

    def close(self) -> None:
        file, sock = self._file, self.sock
        self._file = self.sock = None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()

    def exchange(self, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """POST ``body`` to ``target``: (status, headers by lower-case name,
        body, whether the receiver closes the connection after it)."""
        lines = [
            b"POST " + target.encode("ascii") + b" HTTP/1.1",
            b"Host: " + self._host,
            b"Accept-Encoding: identity",
            b"Content-Length: %d" % len(body),
        ]
        for name, value in headers.items():
            name_bytes, value_bytes = name.encode("ascii"), value.encode("latin-1")
            if not _LEGAL_NAME(name_bytes):
                raise ValueError(f"Invalid header name {name_bytes!r}")
            if _ILLEGAL_VALUE(value_bytes):
                raise ValueError(f"Invalid header value for {name!r}")
            lines.append(name_bytes + b": " + value_bytes)
        if self.sock is None:
            self.connect()
        self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        return self._answer()

    def _answer(self) -> tuple[int, dict[str, str], bytes, bool]:
        while True:
            version, status = self._status_line()
            answer_headers = self._headers()
            if not (100 <= status < 200) or status == 101:
                break  # else an interim answer (100 Continue, 103): the real one follows
        tokens = {token.strip().lower() for token in answer_headers.get("connection", "").split(",")}
        will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if status in (101, 204, 304):
            return status, answer_headers, b"", will_close
        if "chunked" in answer_headers.get("transfer-encoding", "").lower():
            return status, answer_headers, self._chunked(), will_close
        length = answer_headers.get("content-length")
        if length is None:
            return status, answer_headers, self._file.read(), True  # the body ends with the connection
        try:
            size = int(length)
        except ValueError:
            raise ProtocolError(f"bad Content-Length {length!r}") from None
        return status, answer_headers, self._exactly(size), will_close

    def _line(self) -> bytes:
        line = self._file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise ProtocolError("answer line too long")
        return line

    def _status_line(self) -> tuple[str, int]:
        line = self._line()
        if not line:
            raise ConnectionError("Remote end closed connection without response")
        version, _, rest = line.decode("iso-8859-1").strip().partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
            raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
        return version, int(code)

    def _headers(self) -> dict[str, str]:
        found: dict[str, str] = {}
        last = None
        for _ in range(_MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return found
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and last is not None:  # a folded continuation
                found[last] += " " + text.strip()
                continue
            name, colon, value = text.partition(":")
            if colon:
                last = name.strip().lower()
                found.setdefault(last, value.strip())  # the first of repeated headers, as http.client's get()
        raise ProtocolError(f"more than {_MAX_HEADERS} headers")

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._exactly(2)  # the chunk's CRLF

    def _exactly(self, size: int) -> bytes:
        data = self._file.read(size)
        if len(data) < size:
            raise ConnectionError(f"answer cut short: {len(data)} of {size} bytes")
        return data
