"""What payload inspection reports (`Payload`, `DriveBy`), and how much of a body it reads."""

from __future__ import annotations

from dataclasses import dataclass

SNIFF_BYTES = 4096  # how much of a body sniff() needs (the caller may pass more or less)


@dataclass(frozen=True, slots=True)
class Payload:
    """What a body's first bytes are, when they are an executable or an archive."""

    kind: str  # "elf", "pe", "mach-o", "dex", "class", "zip", "jar", "apk", "appx", "ole", "msi", "lnk", …
    label: str  # plain words, e.g. "ELF 32-bit MIPS big-endian executable"
    executable: bool  # runs by itself, as opposed to a container or document
    arch: str | None = None  # "mips", "mipsel", "arm", "aarch64", "x86", "x86_64", "ppc", "sh", …


@dataclass(frozen=True, slots=True)
class DriveBy:
    """A response that delivers a payload, with the evidence and one sentence saying so."""

    payload: Payload | None  # what the bytes are, when sniffed
    filename: str | None
    evidence: tuple[str, ...]  # of "content", "disposition", "extension", "bot-name", "type-mismatch"
    declared_type: str | None  # the Content-Type's media type, lower-case, no parameters
    detail: str  # e.g. "an ELF 32-bit MIPS big-endian executable (Mozi.m) served as text/html"
