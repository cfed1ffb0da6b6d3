"""clickguard's exceptions, all in one place.

    ClickguardError                 base of everything clickguard raises on purpose
    ├── InputError(ValueError)      bad input in a file IT or a feed provider wrote
    │   ├── PolicyError             a policy file that does not validate; carries every problem
    │   └── FeedError               a feed that cannot be used at all (wrong format, unreadable)
    ├── URLError(ValueError)        a URL or host that a browser would refuse too
    ├── TokenError(ValueError)      a signed token that is tampered, truncated, expired or not ours
    ├── UsageError(ValueError)      command-line input that cannot be used: a bad --feed, stdin not text
    ├── FileAccessError(OSError)    a file named on the command line that cannot be read or written
    └── AuditError(OSError)         an audit record not recorded (disk full, store failing); see audit.writer

A single malformed line in a feed is not an error: parsers skip it and count it
(`feeds.SkippedLine`). A problem names its place as ``file:line: field: message``
(`Problem`), so IT can go straight to it; the last good policy or feed keeps serving.
"""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    """One problem in an input file, with the place it was found."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ClickguardError(Exception):
    """Base class of clickguard's own exceptions."""


class InputError(ClickguardError, ValueError):
    """An input file (policy, feed, fingerprint data) is not usable."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PolicyError(InputError):
    """A policy file does not parse or validate."""


class FeedError(InputError):
    """A feed cannot be used at all (unknown format, unreadable file, no entries in a known shape)."""


class URLError(ClickguardError, ValueError):
    """A URL or host name that cannot be normalised the way a browser would."""


class TokenError(ClickguardError, ValueError):
    """A signed token that does not verify: tampered, truncated, expired or issued for someone else."""


class UsageError(ClickguardError, ValueError):
    """What the command line gave (an argument, a proxy option, standard input) cannot be used as given."""


class FileAccessError(ClickguardError, OSError):
    """A file the user named that cannot be read or written (missing, a directory, no permission)."""

    @classmethod
    def of(cls, error: OSError) -> FileAccessError:
        """The same error, in the same words, as one the user can fix."""
        if error.strerror is None:
            return cls(str(error))
        return cls(error.errno, error.strerror, error.filename, None, error.filename2)


class AuditError(ClickguardError, OSError):
    """An audit record that could not be recorded (`AuditLog.write` raises it under on_failure closed)."""
