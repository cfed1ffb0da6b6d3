"""`clickguard check`'s results, and its batch: lines of URLs in, result lines out, on N processes.

One result per URL: a JSON object (`decision_json`, `error_result`) or a text line
(`format_result`). `check_stream` judges standard input in chunks of whole lines; with
``jobs`` > 1 and more than one chunk of input, the chunks go to worker processes
forked after the judge is loaded (its index's pages shared copy-on-write), and the
results are written in input order: the output is the same bytes whatever the number
of jobs. A worker that dies stops the batch with an error (`WorkerDied`), never a hang.

A chunk is a block of whole lines read as bytes, with its first line's number: the
worker decodes, judges and formats it (`LineChecker.chunk`), so the parent only reads,
cuts at the last newline and writes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, BinaryIO, TextIO

from clickguard.decision.check import Decision, check, check_offline, with_origin
from clickguard.decision.judge import Judge
from clickguard.decision.verdict import Finding
from clickguard.errors import ClickguardError, URLError
from clickguard.intel.resolver import Resolver
from clickguard.urls import NormalizedURL, normalize_url

__all__ = [
    "CHUNK_BYTES",
    "LineChecker",
    "WorkerDied",
    "check_stream",
    "decision_json",
    "error_result",
    "format_result",
]

CHUNK_BYTES = 256 * 1024  # about 3,500 URLs: amortises a worker's round trip, bounds the memory held
_IN_FLIGHT_PER_JOB = 3  # chunks queued per worker: enough to keep it busy while the parent writes
# Result lines remembered per process. Only URLs with findings are: they cost two to three times
# a clean one (the findings' details are built), and a campaign repeats the same few in a batch.
_MEMO_LINES = 65_536

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# The encoder's own string escaper (it is what ensure_ascii=False uses): a string written
# with it is the bytes _JSON writes for it.
_str_json: Any = encode_basestring


class WorkerDied(ClickguardError):
    """A worker process of `check --jobs` ended before returning its chunk (killed, out of memory)."""


def decision_json(raw: str, decision: Decision) -> dict[str, Any]:
    """The JSON object `check --json` prints for one URL."""
    verdict = decision.verdict
    out: dict[str, Any] = {
        "url": raw,
        "normalized": decision.url.url,
        "host": decision.url.host,
        "action": verdict.action,
        "reasons": [f.as_dict() for f in verdict.findings],
    }
    if verdict.allowed_by:
        out["allowed_by"] = verdict.allowed_by
    if decision.addresses:
        out["addresses"] = list(decision.addresses)
    return out


def error_result(judge: Judge, raw: str, error: str, origin_ip: str | None = None, *,
                 home_line: str | None = None) -> dict[str, Any]:
    """The result for input that cannot be judged as a URL: the error, and what policy does then."""
    found = judge.origin_findings(origin_ip, home_line=home_line) if origin_ip else []
    verdict = judge.decide(found, incomplete=f"the address cannot be parsed: {error}")
    return {"url": raw, "error": error, "action": verdict.action,
            "reasons": [f.as_dict() for f in verdict.findings]}


def format_result(result: dict[str, Any], as_json: bool) -> str:
    """One output line for one checked URL."""
    if as_json:
        # One encoder built once: json.dumps with options builds a new one per call.
        return _JSON.encode(result) + "\n"
    codes = ",".join(dict.fromkeys(r["code"] for r in result["reasons"])) or "-"
    return f"{result['action']}\t{codes}\t{result['url']}\n"


def _reasons_json(findings: tuple[Finding, ...]) -> str:
    """The "reasons" array of `decision_json` as _JSON writes it (Finding.as_dict's keys, in order)."""
    parts = []
    for f in findings:
        text = f'{{"code":{_str_json(f.code)},"detail":{_str_json(f.detail)}'
        if f.feed is not None:
            text += f',"feed":{_str_json(f.feed)}'
        if f.tags:
            text += ',"tags":[' + ",".join(map(_str_json, f.tags)) + "]"
        if f.indicator is not None:
            text += f',"indicator":{_str_json(f.indicator)}'
        parts.append(text + "}")
    return "[" + ",".join(parts) + "]"


class LineChecker:
    """Judges what `check` reads: each URL's result, and the lines `check -` prints for stdin."""

    def __init__(self, judge: Judge, *, as_json: bool, origin_ip: str | None = None,
                 home_line: str | None = None, resolver: Resolver | None = None) -> None:
        self.judge = judge
        self.as_json = as_json
        self.origin_ip = origin_ip
        self.home_line = home_line
        self.resolver = resolver
        self._offline = resolver is None and not origin_ip  # check_offline says it all
        # The same line, the same result: the judge does not change during a batch; DNS answers may.
        self._memo: dict[str, str] | None = {} if resolver is None else None
        group = judge.group
        self._json_end = f',"group":{_str_json(group)}}}\n' if group else "}\n"

    def result(self, raw: str) -> dict[str, Any]:
        """The result object of one URL (with its group when the judge is a group's)."""
        try:
            url = normalize_url(raw)
        except URLError as e:
            result = error_result(self.judge, raw, str(e), self.origin_ip, home_line=self.home_line)
        else:
            result = decision_json(raw, self._decision(url))
        if self.judge.group:
            result["group"] = self.judge.group
        return result

    def _decision(self, url: NormalizedURL) -> Decision:
        """The decision on a parsed URL, resolved and with the e-mail origin when asked."""
        judge = self.judge
        if self.resolver is not None:
            decision = asyncio.run(check(judge, url, self.resolver))
        else:
            decision = check_offline(judge, url)
        if self.origin_ip:
            decision = with_origin(judge, decision, self.origin_ip, home_line=self.home_line)
        return decision

    def line(self, raw: str) -> tuple[str, bool]:
        """(format_result(result(raw)), whether the URL could not be judged), without the dict.

        This runs once per line of stdin: the result is written straight to its line.
        """
        memo = self._memo
        if memo is not None and (text := memo.get(raw)) is not None:
            return text, False
        try:
            url = normalize_url(raw)
        except URLError:
            return format_result(self.result(raw), self.as_json), True
        decision = check_offline(self.judge, url) if self._offline else self._decision(url)
        verdict = decision.verdict
        findings = verdict.findings
        if not self.as_json:
            if not findings:
                return f"{verdict.action}\t-\t{raw}\n", False
            text = f"{verdict.action}\t{','.join(dict.fromkeys(f.code for f in findings))}\t{raw}\n"
        else:
            text = self._json_line(raw, decision)
        if findings and memo is not None:
            if len(memo) >= _MEMO_LINES:
                memo.clear()
            memo[raw] = text
        return text, False

    def _json_line(self, raw: str, decision: Decision) -> str:
        """format_result(decision_json(raw, decision) with the group), written directly."""
        url, verdict = decision.url, decision.verdict
        findings = verdict.findings
        text = (f'{{"url":{_str_json(raw)},"normalized":{_str_json(url.url)},"host":{_str_json(url.host)},'
                f'"action":"{verdict.action}","reasons":{_reasons_json(findings) if findings else "[]"}')
        if verdict.allowed_by:
            text += f',"allowed_by":{_str_json(verdict.allowed_by)}'
        if decision.addresses:
            text += ',"addresses":[' + ",".join(map(_str_json, decision.addresses)) + "]"
        return text + self._json_end

    def not_text_line(self, raw_line: bytes, number: int, terminated: bool) -> str:
        """The result line of a line of stdin that is not UTF-8: its error, bad bytes escaped.

        The error names the line as read with its newline, when it had one (a sequence cut
        short by the newline is an "invalid continuation byte", not an "unexpected end").
        """
        error = f"line {number} is not UTF-8 text"
        try:
            (raw_line + b"\n" if terminated else raw_line).decode("utf-8")
        except UnicodeDecodeError as e:
            error = f"{error}: {e}"
        raw = raw_line.strip().decode("utf-8", "backslashreplace")
        # No group here: `check -` never printed one on these lines.
        return format_result(error_result(self.judge, raw, error, self.origin_ip, home_line=self.home_line),
                             self.as_json)

    def chunk(self, first_number: int, data: bytes) -> tuple[str, int]:
        """(output, URLs not judged) for a block of whole lines of stdin, its first line numbered so.

        Each line stripped; blank lines and "#" comments skipped; a line that is not UTF-8
        gets its error result and the batch goes on.
        """
        try:
            # One decode for the block: in UTF-8, "\n" is never part of another character.
            raws = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return self._chunk_not_all_text(first_number, data)
        out: list[str] = []
        unjudged = 0
        line = self.line
        for raw in raws:
            raw = raw.strip()
            if raw and raw[0] != "#":
                text, failed = line(raw)
                out.append(text)
                unjudged += failed
        return "".join(out), unjudged

    def _chunk_not_all_text(self, first_number: int, data: bytes) -> tuple[str, int]:
        """`chunk` of a block with lines that are not UTF-8: line by line, those with their error."""
        out: list[str] = []
        unjudged = 0
        lines = data.split(b"\n")
        last = len(lines) - 1  # the one line that may have had no newline
        for index, raw_line in enumerate(lines):
            try:
                raw_line.decode("utf-8")
            except UnicodeDecodeError:
                text, failed = self.not_text_line(raw_line, first_number + index, index < last), 1
            else:
                text, failed = self.chunk(first_number + index, raw_line)
            out.append(text)
            unjudged += failed
        return "".join(out), unjudged


def _chunks(source: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(first line number, block of whole lines, newlines kept) of source, in order, ~CHUNK_BYTES each.

    A line longer than a block is gathered in parts (joined once: no quadratic copying).
    """
    number, parts = 1, []
    while block := source.read(CHUNK_BYTES):
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            parts.append(block)
            continue
        data = b"".join((*parts, block[:cut])) if parts else block[:cut]
        parts = [block[cut:]] if cut < len(block) else []
        yield number, data
        number += data.count(b"\n")
    if parts:
        yield number, b"".join(parts)


_worker_checker: LineChecker | None = None  # set in the parent before forking; the workers inherit it


def _worker_chunk(first_number: int, data: bytes) -> tuple[str, int]:
    """`LineChecker.chunk` in a worker, with the checker forked from the parent."""
    assert _worker_checker is not None, "the pool is forked after _worker_checker is set"
    return _worker_checker.chunk(first_number, data)


def check_stream(checker: LineChecker, source: BinaryIO, out: TextIO, jobs: int = 1) -> int:
    """Judge every line of source and write the results to out in input order; the number not judged.

    With jobs > 1 and more than one chunk of input, the chunks are judged by that many
    forked processes; the bytes written are the same as with one. WorkerDied if one dies.
    """
    chunks = _chunks(source)
    first = next(chunks, None)
    if first is None:
        return 0
    second = next(chunks, None) if jobs > 1 else None
    if second is None:  # one process: asked for, or a single chunk that forking would only delay
        return _check_here(checker, itertools.chain((first,), chunks), out)
    return _check_forked(checker, itertools.chain((first, second), chunks), out, jobs)


def _check_here(checker: LineChecker, chunks: Iterable[tuple[int, bytes]], out: TextIO) -> int:
    """check_stream in this process."""
    unjudged = 0
    for number, data in chunks:
        text, failed = checker.chunk(number, data)
        out.write(text)
        unjudged += failed
    return unjudged


def _check_forked(checker: LineChecker, chunks: Iterator[tuple[int, bytes]], out: TextIO, jobs: int) -> int:
    """check_stream on `jobs` forked workers, a bounded number of chunks in flight, results in order."""
    global _worker_checker
    _worker_checker = checker
    unjudged = 0
    pending: deque[Future[tuple[str, int]]] = deque()
    limit = jobs * _IN_FLIGHT_PER_JOB
    # Ctrl-C reaches the whole process group: the parent stops the batch, the workers need not
    # print a traceback each.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                               initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        for number, data in chunks:
            pending.append(pool.submit(_worker_chunk, number, data))
            while len(pending) >= limit or (pending and pending[0].done()):
                text, failed = pending.popleft().result()
                out.write(text)
                unjudged += failed
        while pending:
            text, failed = pending.popleft().result()
            out.write(text)
            unjudged += failed
    except BrokenProcessPool as e:
        raise WorkerDied(f"a worker process of check --jobs {jobs} died ({e}); the results before its "
                         "chunk were written, the rest were not") from e
    finally:
        _worker_checker = None
        pool.shutdown(wait=True, cancel_futures=True)
    return unjudged
