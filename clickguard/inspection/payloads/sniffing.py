"""What a body's first bytes are: a payload, plainly something harmless, or unknown."""

from __future__ import annotations

from typing import NamedTuple

from clickguard.inspection.payloads.droppers import as_text, markup_or_json, script_payload
from clickguard.inspection.payloads.magic_bytes import LOOK_LIMIT, executable_or_archive
from clickguard.inspection.payloads.results import Payload

_HARMLESS_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image"),
    (b"\xff\xd8\xff", "image"),
    (b"GIF87a", "image"),
    (b"GIF89a", "image"),
    (b"II*\0", "image"),
    (b"MM\0*", "image"),
    (b"\0\0\1\0", "image"),  # ICO
    (b"%PDF-", "pdf"),
    (b"wOFF", "font"),
    (b"wOF2", "font"),
    (b"OTTO", "font"),
    (b"\0\1\0\0\0", "font"),
    (b"ttcf", "font"),
    (b"ID3", "media"),
    (b"OggS", "media"),
    (b"fLaC", "media"),
    (b"\x1a\x45\xdf\xa3", "media"),  # Matroska, WebM
)
_HARMLESS_FIRST_BYTES = frozenset(magic[:1] for magic, _ in _HARMLESS_MAGICS)
_RIFF_KINDS = {b"WEBP": "image", b"WAVE": "media", b"AVI ": "media"}


class Seen(NamedTuple):
    """What the first bytes of a body are, as far as they tell."""

    payload: Payload | None
    harmless: str | None  # "image", "pdf", "font", "media", "markup", "json" or "text" when plainly that
    member: str | None  # a top-level ZIP entry that runs when opened


NOTHING_SEEN = Seen(None, None, None)


def examine(head: bytes) -> Seen:
    """What the start of head is: a payload, plainly something harmless, or unknown (both None)."""
    head = bytes(head[:LOOK_LIMIT])
    payload, member = executable_or_archive(head)
    if payload is not None:
        return Seen(payload, None, member)
    if head[:1] in _HARMLESS_FIRST_BYTES:
        for magic, kind in _HARMLESS_MAGICS:
            if head.startswith(magic):
                return Seen(None, kind, None)
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_KINDS:
        return Seen(None, _RIFF_KINDS[head[8:12]], None)
    if head[4:8] == b"ftyp":  # ISO base media: MP4, MOV, HEIC, AVIF
        return Seen(None, "media", None)
    text = as_text(head)
    if text is None:
        return NOTHING_SEEN  # compressed, encrypted or unknown binary
    markup = markup_or_json(text)
    if markup is not None:
        return Seen(None, markup, None)
    script = script_payload(text)
    return Seen(script, None if script else "text", None)


def sniff(head: bytes) -> Payload | None:
    """The executable or archive that head starts, told from its bytes alone; None for anything else."""
    return examine(head).payload
