"""Audit records sent to a SIEM over syslog: best effort, off the response path, never holding a request.

The audit writer hands every record it has settled to `SyslogSender.offer` (one lock and
an append, after the callers are acknowledged): a bounded queue (``audit.syslog.max_queue``)
feeds one sender thread; what does not fit is dropped and counted. The thread formats each
record and sends it:

- a message is an RFC 5424 line, ``<PRI>1 TIMESTAMP HOST APP-NAME PROCID - - MSG``, where MSG
  is the record's JSON line as the audit log has it (format ``json``) or an ArcSight CEF line
  (``cef``), both without a line break inside; one message is at most ``max_message`` bytes
  (a longer one is shortened, `fit`);
- ``udp://``: a datagram a message, on a connected socket (so a "port unreachable" shows as
  an outage); ``unix:PATH``: a datagram socket like /dev/log, or a stream socket if that is
  what listens there;
- ``tcp://`` and unix stream sockets: newline framing by default (RFC 6587's non-transparent
  framing: what rsyslog's imtcp, syslog-ng's network() and tcp() sources and the usual SIEM
  collectors read without configuration), or octet counting (``framing: octet_counting``,
  what syslog-ng's syslog() source wants).

An outage (refused, reset, unreachable, a peer that reads nothing for SEND_TIMEOUT) is logged
once when it starts and once when it ends, counted, and tried again after RETRY_FIRST seconds,
doubling up to RETRY_MAX; meanwhile records wait in the queue, and past max_queue they are
dropped (logged once per such period). Syslog has no acknowledgement: a message in flight when
a TCP peer goes away may be lost. The sender's state is in `SyslogSender.health`.

CEF as ArcSight's "Implementing ArcSight Common Event Format" (revision 25) has it: in header
fields ``\\`` and ``|`` are escaped; in extension values ``\\`` and ``=``, and line breaks become
``\\n`` / ``\\r``; keys are fixed here. The URL, the host and the user come from outside: the
escaping is what keeps them from adding fields or lines. Control characters CEF defines no
escape for (and U+2028/U+2029, lone surrogates) become U+FFFD, so no receiver cuts a line there.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from clickguard import __version__, reasons
from clickguard.policy.sections import SyslogConfig

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds a TCP connect may take
SEND_TIMEOUT = 5.0  # seconds a send may block (a peer that stops reading): then it is an outage
RETRY_FIRST = 0.25  # seconds before the first retry of an outage; doubles each failure
RETRY_MAX = 5.0  # seconds between retries at most
DRAIN_TIMEOUT = 2.0  # seconds `close` lets the thread send what is queued
FIELD_CAP = 256  # characters a CEF field other than the URL keeps (and a shortened JSON message's)

type Item = tuple[str, Mapping[str, Any]]  # (the audit log's JSON line, the record)

# Syslog severities by action (RFC 5424: 4 warning, 5 notice, 6 informational), CEF's 0-10.
_SYSLOG_SEVERITY = {"block": 4, "warn": 5, "allow": 6}
_CEF_SEVERITY = {"block": 8, "warn": 6, "allow": 3}
# What neither CEF nor a line-based receiver may see raw: control characters, the Unicode line
# and paragraph separators, lone surrogates (mitmproxy keeps undecodable bytes that way).
_UNSAFE = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_VALUE_SPECIAL = re.compile(r"\\|=|\r\n|\n|\r")
_VALUE_ESCAPES = {"\\": "\\\\", "=": "\\=", "\r\n": "\\n", "\n": "\\n", "\r": "\\r"}
_NOT_PRINTUSASCII = re.compile("[^\x21-\x7e]")
# The record's fields a shortened JSON message keeps (DESIGN.md's fixed ones and who and where).
_JSON_KEPT = ("ts", "ref", "event", "client", "user", "group", "url", "action", "reasons", "origin_ip",
              "host", "click_id")


def cef_header(text: str) -> str:
    """A CEF header field: backslash and pipe escaped, line breaks and control characters replaced."""
    if not text.isprintable():  # the usual text is, and needs no regular expression
        text = _UNSAFE.sub("\ufffd", text.replace("\r", "\n").replace("\n", "\ufffd"))
    return text.replace("\\", "\\\\").replace("|", "\\|")


def cef_value(text: str) -> str:
    """A CEF extension value: backslash and equals escaped, line breaks as \\n or \\r, controls replaced."""
    if text.isprintable():  # no line break, no control character, no lone surrogate
        return text.replace("\\", "\\\\").replace("=", "\\=")
    return _VALUE_SPECIAL.sub(lambda m: _VALUE_ESCAPES[m[0]], _UNSAFE.sub("\ufffd", text))


def cef(entry: Mapping[str, Any], *, url: str | None = None) -> str:
    """One audit record as a CEF line (`url` in place of the record's, when shortened)."""
    action = str(entry.get("action") or "")
    codes = [str(code) for code in entry.get("reasons") or ()]
    signature = codes[0] if codes else action
    name = reasons.text(codes[0]) if codes else f"{action} ({entry.get('event')})"
    header = "|".join(cef_header(part) for part in (
        "CEF:0", "clickguard", "clickguard", __version__, signature, name,
        str(_CEF_SEVERITY.get(action, 5))))
    fields = [("rt", _epoch_ms(entry.get("ts"))), ("act", action), ("cat", entry.get("event")),
              ("request", entry.get("url") if url is None else url), ("suser", entry.get("user")),
              *_client_fields(entry.get("client")), ("dhost", entry.get("host")),
              ("externalId", entry.get("ref")), *_custom("cs1", "originIp", entry.get("origin_ip")),
              *_custom("cs2", "reasons", ",".join(codes)), *_custom("cs3", "group", entry.get("group")),
              *_custom("cs4", "clickId", entry.get("click_id"))]
    extension = " ".join(f"{key}={cef_value(_capped(key, value))}" for key, value in fields
                         if value not in (None, ""))
    return f"{header}|{extension}"


def _custom(key: str, label: str, value: object) -> list[tuple[str, object]]:
    """A custom field with its label (CEF's csN and csNLabel), or nothing when there is no value."""
    return [(key, value), (f"{key}Label", label)] if value not in (None, "") else []


def _capped(key: str, value: object) -> str:
    """A field's text; all but the URL cut at FIELD_CAP (a user or host name is never that long)."""
    text = str(value)
    return text if key == "request" or len(text) <= FIELD_CAP else text[:FIELD_CAP] + "…"


def _client_fields(client: object) -> list[tuple[str, object]]:
    """The client's address: src for IPv4, c6a2 for IPv6 (CEF's src holds IPv4 only), else shost."""
    text = str(client)
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)  # in C: ipaddress costs microseconds a record
        except (OSError, ValueError):
            continue
        return [("src", text)] if family == socket.AF_INET else _custom("c6a2", "Source IPv6 Address", text)
    return [("shost", client)]


def _epoch_ms(ts: object) -> int | None:
    """The record's time as milliseconds since the epoch (CEF's rt), None if it is not an ISO time."""
    try:
        return int(datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def header(config: SyslogConfig, entry: Mapping[str, Any], hostname: str) -> bytes:
    """The RFC 5424 header up to the message: ``<PRI>1 TIMESTAMP HOST APP-NAME PROCID - - ``."""
    priority = config.facility * 8 + _SYSLOG_SEVERITY.get(str(entry.get("action")), 5)
    timestamp = _NOT_PRINTUSASCII.sub("", str(entry.get("ts") or "")) or "-"
    return f"<{priority}>1 {timestamp} {hostname} {config.app_name} {os.getpid()} - - ".encode("ascii")


def message(config: SyslogConfig, item: Item, hostname: str) -> bytes:
    """One record as a whole syslog message (no framing), at most config.max_message bytes."""
    line, entry = item
    head = header(config, entry, hostname)
    room = config.max_message - len(head)
    if config.format == "cef":
        return head + fit(lambda url: cef(entry, url=url).encode("utf-8"), str(entry.get("url")), room)
    body = line.rstrip("\n").encode("utf-8", "backslashreplace")
    if len(body) > room:
        kept = {k: _capped(k, v) if isinstance(v, str) and k != "url" else v
                for k, v in entry.items() if k in _JSON_KEPT}
        body = fit(lambda url: json.dumps({**kept, "url": url, "truncated": True},
                                          separators=(",", ":")).encode("ascii"),
                   str(entry.get("url")), room)
    return head + body


def fit(build: Callable[[str], bytes], url: str, room: int) -> bytes:
    """build(url), the URL cut (marked with …) until it fits in room bytes; a last resort cuts the bytes.

    Every character of the URL adds at least one byte, so cutting as many characters as the
    message is over makes it fit at the second try, unless the rest alone is too long.
    """
    data = build(url)
    if len(data) <= room:
        return data
    keep = len(url) - (len(data) - room) - 1
    data = build(url[:max(keep, 0)] + "…")
    if len(data) <= room:
        return data
    return data[:room].decode("utf-8", "ignore").encode("utf-8")  # a character cut in half goes


def framed(data: bytes, framing: str) -> bytes:
    """A message as it goes on a stream: a line feed after it, or its length before it (RFC 6587)."""
    return data + b"\n" if framing == "newline" else b"%d %s" % (len(data), data)


class SyslogSender:
    """A bounded queue of audit records and the thread that sends them to one syslog target."""

    def __init__(self, config: SyslogConfig) -> None:
        self.config = config
        self.hostname = _NOT_PRINTUSASCII.sub("-", socket.gethostname())[:255] or "-"
        self._queue: deque[Item] = deque()
        self._ready = threading.Condition(threading.Lock())  # not reentrant: cheaper
        self._stopping = False
        self._drain_until = 0.0  # monotonic: when stopping, sending goes on until then
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._stream = config.transport == "tcp"  # a unix socket says at connect time
        self._retry_in = RETRY_FIRST
        self._dropping = False  # the queue overflowed and has not drained since (logged once)
        self.sent = 0
        self.dropped = 0  # records that found the queue full
        self.lost = 0  # records given up on: a bug formatting them, too large for the socket
        self.failing = False
        self.failing_since: float | None = None  # Unix time the current outage started
        self.outages = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # Unix time

    def start(self) -> None:
        """Start the sender thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="clickguard-audit-syslog", daemon=True)
            self._thread.start()

    def offer(self, items: Sequence[Item]) -> None:
        """Queue records to send; those that do not fit in max_queue are dropped and counted. Never blocks."""
        if not items:
            return
        with self._ready:
            room = 0 if self._stopping else self.config.max_queue - len(self._queue)
            taken = items if len(items) <= room else items[:max(room, 0)]
            self._queue.extend(taken)
            dropped = len(items) - len(taken)
            self.dropped += dropped
            first_drop = dropped and not self._dropping
            self._dropping = self._dropping or bool(dropped)
            self._ready.notify()
        if first_drop:
            logger.error("audit syslog %s: %d records wait to be sent; further records are dropped "
                         "(counted) until the queue drains", self.config.target, self.config.max_queue)

    def close(self, *, wait: bool = True) -> None:
        """Stop: what is queued is sent for up to DRAIN_TIMEOUT s (not in an outage), the rest dropped."""
        with self._ready:
            self._stopping = True
            self._drain_until = time.monotonic() + DRAIN_TIMEOUT
            self._ready.notify_all()
        if wait and self._thread is not None:
            self._thread.join(DRAIN_TIMEOUT + SEND_TIMEOUT)

    def health(self) -> dict[str, Any]:
        """The sender's state, JSON-ready: failing or not, last error and when, counts, queue depth."""
        return {"path": self.config.target, "format": self.config.format, "failing": self.failing,
                "failing_since": self.failing_since, "last_error": self.last_error,
                "last_error_at": self.last_error_at, "failures": self.outages, "sent": self.sent,
                "backlog": len(self._queue), "dropped": self.dropped, "lost": self.lost}

    # The sender thread.

    def _run(self) -> None:
        """Send queued records in order until stopped; an outage waits and retries the same record."""
        while (item := self._next()) is not None:
            try:
                data = message(self.config, item, self.hostname)
            except Exception:  # a bug must not end the sender: the queue would only fill up
                logger.exception("audit syslog %s: record %s not formatted", self.config.target,
                                 item[1].get("ref"))
                self._done(sent=False)
                continue
            outcome = self._send(data)
            if outcome == "retry":
                self._wait_retry()
            else:
                self._done(sent=outcome == "sent")
        self._disconnect()
        with self._ready:
            left, self._queue = len(self._queue), deque()
            self.dropped += left
        if left:
            logger.warning("audit syslog %s: %d records not sent at shutdown", self.config.target, left)

    def _next(self) -> Item | None:
        """The oldest queued record (left queued until sent); None when stopping and done."""
        with self._ready:
            while not self._queue and not self._stopping:
                self._ready.wait()
            if self._stopping and (not self._queue or self.failing or time.monotonic() > self._drain_until):
                return None
            return self._queue[0]

    def _done(self, *, sent: bool) -> None:
        """Take the oldest record off the queue, sent or given up on."""
        with self._ready:
            self._queue.popleft()
            drained = self._dropping and len(self._queue) < self.config.max_queue // 2
            if drained:
                self._dropping = False
        if sent:
            self.sent += 1
        else:
            self.lost += 1
        if drained:
            logger.warning("audit syslog %s: the queue drains again; %d records dropped so far",
                           self.config.target, self.dropped)

    def _send(self, data: bytes) -> Literal["sent", "retry", "lost"]:
        """Send one message, connecting first if need be; "retry" after an outage (noted, socket closed)."""
        try:
            if self._socket is None:
                self._socket = self._connect()
            if self._stream:
                self._socket.sendall(framed(data, self.config.framing))
            else:
                self._socket.send(data)
        except OSError as e:
            if e.errno == errno.EMSGSIZE:  # this message only: a datagram the socket cannot take
                logger.error("audit syslog %s: a message of %d bytes is too large: %s",
                             self.config.target, len(data), e)
                return "lost"
            self._disconnect()
            self._outage(e)
            return "retry"
        if self.failing:
            logger.warning("audit syslog %s: sending again after %.0f s", self.config.target,
                           time.time() - (self.failing_since or time.time()))
            self.failing, self.failing_since = False, None
        self._retry_in = RETRY_FIRST
        return "sent"

    def _connect(self) -> socket.socket:
        """A socket connected to the target; OSError if it cannot be."""
        transport = self.config.transport
        where, port = self.config.address
        if transport == "tcp":
            sock = socket.create_connection((where, port), timeout=CONNECT_TIMEOUT)
        elif transport == "udp":
            family, kind, proto, _name, address = socket.getaddrinfo(where, port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            _connect_or_close(sock, address)
        else:
            sock = self._connect_unix(where)
        sock.settimeout(SEND_TIMEOUT)
        return sock

    def _connect_unix(self, path: str) -> socket.socket:
        """A datagram socket to path (like /dev/log), or a stream one if a stream socket listens there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            _connect_or_close(sock, path)
        except OSError as e:
            if e.errno != errno.EPROTOTYPE:
                raise
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            _connect_or_close(sock, path)
            self._stream = True
            return sock
        self._stream = False
        return sock

    def _disconnect(self) -> None:
        """Close the socket, if any; the next send connects again."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def _outage(self, error: OSError) -> None:
        """Note a failed send: the first of an outage is logged and counted, retries back off."""
        self.last_error = str(error) or repr(error)
        self.last_error_at = time.time()
        if not self.failing:
            self.failing, self.failing_since = True, self.last_error_at
            self.outages += 1
            self._retry_in = RETRY_FIRST
            logger.error("audit syslog %s: cannot send (%s); records wait (up to %d, then dropped) "
                         "and sending is retried", self.config.target, self.last_error,
                         self.config.max_queue)
        else:
            self._retry_in = min(self._retry_in * 2, RETRY_MAX)

    def _wait_retry(self) -> None:
        """Wait before the next try, unless told to stop."""
        with self._ready:
            self._ready.wait_for(lambda: self._stopping, timeout=self._retry_in)


def _connect_or_close(sock: socket.socket, address: Any) -> None:
    """Connect sock, closing it if that fails."""
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
