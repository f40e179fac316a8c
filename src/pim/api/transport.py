"""The HTTP connection protocol: uvicorn's (httptools), with bounded request heads.

uvicorn accepts a request head of any size: a 32 MB header was read whole, and four of them
took the process from 142 to 315 MB. Here a request whose header is over MAX_HEADER_BYTES, or
whose head is over MAX_HEAD_BYTES in all, is answered ``431 Request Header Fields Too Large``
(problem+json) and its connection closed, without the application seeing it. A head that
never ends is cut off as soon as the bytes read for it pass the limit, so a connection holds
at most the limit plus one read."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 16 * 1024  # one header line (name and value)
MAX_HEAD_BYTES = 64 * 1024  # the request line and every header

_TOO_LARGE = (
    b'{"type":"https://pim.dev/problems/request-header-fields-too-large",'
    b'"title":"Request Header Fields Too Large","status":431,'
    b'"detail":"request headers exceed 16 KiB for one header or 64 KiB in all",'
    b'"error":"request headers exceed 16 KiB for one header or 64 KiB in all"}'
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = False  # between a request's first byte and its blank line
        self._head_bytes = 0
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._too_large:
            return
        super().data_received(data)
        if self._reading_head and not self._too_large:
            # A read that leaves the head unfinished was (nearly all) head: the parser
            # keeps a header it has not seen the end of, so its size is bounded here.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse()

    def on_message_begin(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)  # the target may come in pieces
        if len(self.url) > MAX_HEADER_BYTES:
            self._too_large = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER_BYTES:
            self._too_large = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        if self._too_large or sum(len(n) + len(v) for n, v in self.headers) > MAX_HEAD_BYTES:
            self._refuse()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._too_large:
            super().on_message_complete()

    def _refuse(self) -> None:
        self._too_large = True
        if self.transport.is_closing():
            return
        head = [
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + _TOO_LARGE)
        self.transport.close()
