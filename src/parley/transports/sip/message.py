"""SIP messages (RFC 3261): parsing one UDP datagram, and building responses and requests."""

from __future__ import annotations

from dataclasses import dataclass, field

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}
COMPACT.update({"c": "content-type", "k": "supported", "r": "refer-to", "b": "referred-by"})


class SipError(ValueError):
    """A datagram that is not a SIP message."""


@dataclass
class SipMessage:
    start: str
    """The request line (``INVITE sip:x SIP/2.0``) or the status line (``SIP/2.0 200 OK``)."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        if self.is_request:
            return self.start.split(" ", 1)[0]
        return self.cseq[1]

    @property
    def uri(self) -> str:
        return self.start.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1]) if not self.is_request else 0

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = (self.header("cseq") or "0 NONE").split()
        return int(number), method

    @property
    def call_id(self) -> str:
        return self.header("call-id") or ""

    @property
    def branch(self) -> str:
        via = self.header("via") or ""
        for param in via.split(";")[1:]:
            if param.strip().startswith("branch="):
                return param.strip()[7:]
        return ""

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if _canonical(key) == wanted]

    def encode(self) -> bytes:
        lines = [self.start, *(f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length")]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def _canonical(key: str) -> str:
    key = key.strip().lower()
    return COMPACT.get(key, key)


def parse(data: bytes) -> SipMessage:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        lines = head.decode("utf-8").replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError:
        raise SipError("not UTF-8") from None
    start = lines[0].strip()
    if not (start.endswith(" SIP/2.0") or start.startswith("SIP/2.0 ")):
        raise SipError(f"not a SIP start line: {start[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            key, value = headers[-1]
            headers[-1] = (key, f"{value} {line.strip()}")
        elif ":" in line:
            key, value = line.split(":", 1)
            headers.append((key.strip(), value.strip()))
    message = SipMessage(start, headers, body)
    length = message.header("content-length")
    if length is not None and length.isdigit():
        message.body = body[: int(length)]
    return message


def tag_of(header: str | None) -> str | None:
    for param in (header or "").split(";")[1:]:
        if param.strip().startswith("tag="):
            return param.strip()[4:]
    return None


def uri_of(header: str | None) -> str:
    """The URI of a From/To/Contact header value (inside ``<>`` or before the parameters)."""
    value = header or ""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value.split(";")[0].strip()


def response(
    request: SipMessage,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipMessage:
    """A response to ``request``: its Via headers, From, Call-ID and CSeq; To with ``to_tag``."""
    headers = [(k, v) for k, v in request.headers if _canonical(k) in ("via", "from", "call-id", "cseq")]
    to = request.header("to") or ""
    if to_tag and tag_of(to) is None:
        to = f"{to};tag={to_tag}"
    headers.insert(len(request.all("via")) + 1, ("To", to))
    headers += extra or []
    return SipMessage(f"SIP/2.0 {status} {reason}", headers, body)
