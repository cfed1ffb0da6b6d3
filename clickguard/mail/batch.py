"""`clickguard rewrite`: one message, a directory of messages or an mbox, in one process or a pool.

With ``--jobs N`` above 1 the messages of a directory or an mbox are rewritten by N
forked processes. The parent reads the mbox and writes it; for a directory each
worker reads its file and writes the rewritten one (creating files is much of the
cost there). Either way the parent takes the outcomes in input order, so stderr,
the summary, the exit status and every byte written are those of ``--jobs 1``; a
message that cannot be rewritten is passed through and named as before, and the
batch goes on. An output that cannot be written stops the batch (exit 2); with a
pool, files after it in the directory may already have been written.
Nothing here imports mitmproxy.
"""

from __future__ import annotations

import argparse
import contextlib
import email.errors
import gc
import mailbox
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from clickguard.errors import ClickguardError, FileAccessError, UsageError
from clickguard.files import user_files
from clickguard.mail.home_line import OriginAddress
from clickguard.mail.origin import TrustedBoundary, origin_of_message
from clickguard.mail.rewrite import RewriteResult, RewriteSettings, rewrite_message
from clickguard.policy.model import Policy
from clickguard.tokens import load_or_create_key

__all__ = ["MAX_JOBS", "default_jobs", "jobs_count", "rewrite_command"]

MAX_JOBS = 64
# Messages handed to a worker at a time: fewer round trips between the processes, yet
# a short batch still spreads over every worker.
_CHUNK = 8
# What a message the mail code cannot take may raise (codecs raise LookupError and UnicodeError,
# a ValueError); anything else is a bug and shows its traceback.
_UNREWRITABLE = (ValueError, LookupError, email.errors.MessageError)
# The blank line that ends a header block, whatever the line breaks (as email.feedparser splits
# lines: CRLF, CR or LF). "\r\n" alone is one break, so a CR followed by LF is never two.
_BLANK_LINE = re.compile(rb"\n\n|\n\r|\r\r")

def default_jobs() -> int:
    """The processes `--jobs` defaults to: one per CPU this process may run on."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_JOBS))


def jobs_count(value: str) -> int:
    """N for --jobs: 1 to MAX_JOBS processes."""
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"expected a count of processes, 1 to {MAX_JOBS}, got {value!r}")
    return int(value)


class Outcome(NamedTuple):
    """What one input gave: its rewritten bytes, the links wrapped, and what stderr says of it."""

    data: bytes  # what is written for it (the input itself when passed through; b"" once written)
    links: int
    note: str | None  # the stderr line naming it: passed through or skipped, with the reason
    skipped: bool  # could not be read: nothing is written for it
    write_error: OSError | None = None  # a directory's worker could not write its output


class MessageRewriter:
    """Rewrites one message: its origin read from its Received headers, then `rewrite_message`."""

    def __init__(self, policy: Policy, settings: RewriteSettings, recipient: str | None) -> None:
        self.policy = policy
        self.settings = settings
        self.recipient = recipient

    def rewrite(self, raw: bytes, name: str) -> Outcome:
        """The message rewritten; raw itself, with the reason, if it cannot be."""
        try:
            result = self._rewrite(raw)
        except _UNREWRITABLE as e:
            reason = str(e) if isinstance(e, ClickguardError) else f"{type(e).__name__}: {e}"
            return _passed_through(raw, name, reason)
        if result.error:
            return _passed_through(raw, name, result.error)
        return Outcome(result.data, result.links, None, False)

    def _rewrite(self, raw: bytes) -> RewriteResult:
        """rewrite_message with the message's origin (and its home-line evidence) read from it."""
        email_policy = self.policy.email
        # Only the header block: the header parser would otherwise read the whole body line by line.
        origin = origin_of_message(_header_block(raw), trusted_relays=email_policy.trusted_relays,
                                   internal_networks=email_policy.relay_networks)
        # The home-line evidence rides on the address into the click links (see OriginAddress).
        origin_ip = origin.ip
        if origin_ip and origin.home_line:
            origin_ip = OriginAddress(origin_ip, origin.home_line)
        return rewrite_message(raw, self.settings, origin_ip=origin_ip, recipient=self.recipient)

    def rewrite_file(self, job: tuple[Path, Path]) -> Outcome | None:
        """One file of a directory rewritten into its target; None when it is not a file."""
        path, target = job
        try:
            if not path.is_file():
                return None  # a subdirectory, a FIFO, a dangling link: not a message
            raw = path.read_bytes()
        except OSError as e:
            return _skipped(str(path), e)
        outcome = self.rewrite(raw, str(path))
        try:
            target.write_bytes(outcome.data)
        except OSError as e:
            return outcome._replace(data=b"", write_error=e)
        return outcome._replace(data=b"")  # written: the parent needs only the counts and the note

    def rewrite_entry(self, job: tuple[str, bytes | OSError]) -> Outcome:
        """One message of an mbox (or the error reading it) rewritten."""
        name, raw = job
        if isinstance(raw, OSError):
            return _skipped(name, raw)
        return self.rewrite(raw, name)


def _header_block(raw: bytes) -> bytes:
    """raw up to and including the blank line that ends its headers (all of it when there is none)."""
    found = _BLANK_LINE.search(raw)
    if found is None:
        return raw
    end = found.end()
    return raw[:end + 1] if raw.startswith(b"\r\n", end - 1) else raw[:end]


def _passed_through(raw: bytes, name: str, reason: str) -> Outcome:
    """raw, to be reported as passed through unchanged."""
    return Outcome(raw, 0, f"{name}: passed through unchanged: {reason}", False)


def _skipped(name: str, error: OSError) -> Outcome:
    """An input that could not be read (nothing is written for it)."""
    return Outcome(b"", 0, f"{name}: skipped (could not be read): {error.strerror or error}", True)


class Tally:
    """The counts of one run, and the stderr lines in input order."""

    def __init__(self) -> None:
        self.messages = self.links = self.unchanged = self.skipped = 0

    def add(self, outcome: Outcome) -> None:
        """Count one input and print its note."""
        self.messages += 1
        self.links += outcome.links
        if outcome.skipped:
            self.skipped += 1
        elif outcome.note is not None:
            self.unchanged += 1
        if outcome.note is not None:
            print(outcome.note, file=sys.stderr)

    def finish(self) -> int:
        """Print the summary line; the exit status (0, or 1 when some were passed through or skipped)."""
        skipped = f", {self.skipped} skipped (could not be read)" if self.skipped else ""
        print(f"clickguard rewrite: {self.messages} messages, {self.links} links rewritten, "
              f"{self.unchanged} passed through unchanged{skipped}", file=sys.stderr)
        return 1 if self.unchanged or self.skipped else 0


def rewrite_command(source: Path, output: Path | None, policy: Policy, *, certs: Path,
                    recipient: str | None, jobs: int) -> int:
    """Rewrite one message, a directory of messages or an mbox; the exit status (see REWRITE_EXIT)."""
    # Checked once here: a bad relay or network entry stops the batch, not each message.
    TrustedBoundary(policy.email.trusted_relays, policy.email.relay_networks)
    recipient = _text_argument(recipient, "--recipient")
    with user_files():
        key = load_or_create_key(certs / "clickguard.key")
    settings = RewriteSettings(policy.click_host, key, policy.click_links.recipient,
                               policy.click_links.skip_domains)
    rewriter = MessageRewriter(policy, settings, recipient)
    tally = Tally()
    if source.is_dir():
        if output is None:
            raise UsageError("rewriting a directory needs -o DIRECTORY")
        _rewrite_directory(source, output, rewriter, tally, jobs)
    elif _head(source, 5) == b"From ":
        if output is None:
            raise UsageError("rewriting an mbox needs -o FILE")
        _rewrite_mbox(source, output, rewriter, tally, jobs)
    else:
        with user_files():
            raw = source.read_bytes()
        outcome = rewriter.rewrite(raw, str(source))
        tally.add(outcome)
        if output is None:
            sys.stdout.buffer.write(outcome.data)
            sys.stdout.buffer.flush()
        else:
            with user_files():
                output.write_bytes(outcome.data)
    return tally.finish()


def _text_argument(value: str | None, option: str) -> str | None:
    """An argument that must be text (bytes that are not UTF-8 reach Python as lone surrogates)."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{option}: not UTF-8 text: {value!r}") from None
    return value


def _head(path: Path, size: int) -> bytes:
    """The first bytes of a file the user named; FileAccessError if it cannot be read."""
    with user_files(), path.open("rb") as f:
        return f.read(size)


def _rewrite_directory(source: Path, output: Path, rewriter: MessageRewriter, tally: Tally,
                       jobs: int) -> None:
    """Rewrite every file of a directory into output, under the same name; unreadable ones skipped."""
    with user_files():
        output.mkdir(parents=True, exist_ok=True)
        entries = sorted(source.iterdir())
    work = ((path, output / path.name) for path in entries)
    # Closed on the way out, so the pool stops before anything else does.
    with contextlib.closing(_in_order(rewriter.rewrite_file, work, jobs, len(entries))) as outcomes:
        for outcome in outcomes:
            if outcome is None:
                continue
            tally.add(outcome)
            if outcome.write_error is not None:
                raise FileAccessError.of(outcome.write_error)


def _rewrite_mbox(source: Path, output: Path, rewriter: MessageRewriter, tally: Tally, jobs: int) -> None:
    """Rewrite every message of an mbox into another, each with its own From_ line.

    Messages are taken and written as bytes: the email package never parses or
    re-serialises them (it re-folds headers and cannot write some 8-bit messages back),
    so a message passed through is the same bytes, and its From_ line stays as it was.
    """
    with user_files():
        box = mailbox.mbox(source, create=False)
    try:
        with user_files():
            keys = box.keys()
            out = mailbox.mbox(output)
        try:
            _lock(out, output)
            envelopes: list[bytes] = []  # the From_ lines of the messages handed out, in order
            work = _mbox_entries(box, keys, f"{source}#", envelopes)
            # Closed on the way out: the pool, which reads box, stops before box is closed.
            with contextlib.closing(_in_order(rewriter.rewrite_entry, work, jobs, len(keys))) as outcomes:
                for n, outcome in enumerate(outcomes):
                    tally.add(outcome)
                    if not outcome.skipped:
                        with user_files():
                            out.add(envelopes[n] + b"\n" + outcome.data)
            with user_files():
                out.flush()
        finally:
            out.close()  # unlocks too
    finally:
        box.close()


def _mbox_entries(box: mailbox.mbox, keys: list[str], prefix: str,
                  envelopes: list[bytes]) -> Iterator[tuple[str, bytes | OSError]]:
    """(name, message bytes or the error reading it) of each message; its From_ line kept in envelopes."""
    for n, key in enumerate(keys, 1):
        try:
            envelope, _, raw = box.get_bytes(key, from_=True).partition(b"\n")
        except OSError as e:
            envelopes.append(b"")
            yield f"{prefix}{n}", e
            continue
        envelopes.append(envelope)
        yield f"{prefix}{n}", raw


def _lock(box: Any, path: Path) -> None:
    """Lock an mbox for writing; UsageError if another program holds it."""
    try:
        box.lock()
    except mailbox.ExternalClashError as e:
        raise UsageError(f"{path}: {e}") from e


def _in_order[Job](rewrite: Callable[[Job], Outcome | None], work: Iterable[Job], jobs: int,
                   count: int) -> Generator[Any, None, None]:
    """rewrite applied to each job, outcomes in input order: here, or in a pool of forked processes."""
    jobs = min(jobs, max(count, 1))
    if jobs == 1:
        yield from map(rewrite, work)
        return
    global _REWRITE
    _REWRITE = rewrite  # the workers are forked: they inherit it (no pickling of the policy)
    # What the workers inherit is left out of their collections: the collector would write to
    # every inherited object, copying each page of the parent's memory into each worker.
    gc.freeze()
    # The parent's Ctrl-C stops the run; the workers leave it to the parent (no traceback each).
    with multiprocessing.get_context("fork").Pool(jobs, initializer=signal.signal,
                                                  initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
        yield from pool.imap(_run_job, work, chunksize=_CHUNK)


_REWRITE: Callable[[Any], Outcome | None] | None = None


def _run_job(job: Any) -> Outcome | None:
    """In a worker: the job rewritten by the function the parent set before forking."""
    assert _REWRITE is not None, "the pool is forked after _REWRITE is set"
    return _REWRITE(job)
