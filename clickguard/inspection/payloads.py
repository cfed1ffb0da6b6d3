"""Drive-by payloads in a response: what the body's first bytes are, what the download is called.

Three questions, each answered from one response as the proxy sees it, never from a
second request:

- `sniff` names executables and archives by their magic bytes (ELF with its
  architecture, PE, Mach-O, DEX, Java class, LNK; JAR, APK and MSIX inside ZIP; MSI
  inside OLE2; RAR, 7z, CAB, ISO 9660, VHD) and shell or PowerShell droppers by their
  text. The declared Content-Type is never trusted. Everything else (HTML, JSON, XML,
  images, PDF, fonts, media, compressed data, plain text) is None.
- `dangerous_extension` and `bot_binary_name` judge a file name: Chromium's download
  danger levels, and the names IoT bots give their per-architecture binaries.
- `filename_from` reads the download's name as a browser does (RFC 6266 and RFC 8187,
  tolerating what Chromium tolerates); `find_drive_by` puts it all together.

`find_drive_by` reports a drive-by for any one of these, and lists every one that holds
as evidence:

``content``
    the bytes are an executable (ELF, PE, Mach-O, DEX, JAR, APK, MSI, LNK, a shell or
    PowerShell script), whatever the declared type; or a ZIP whose top level holds a
    file that runs when opened (``invoice.js`` in ``invoice.zip``: the malspam shape).
``extension`` / ``bot-name``
    the file name is one Chromium warns about, or a bot binary name, and the bytes do
    not refute it. Bytes refute a name when they are plainly something harmless of
    another kind: a ``setup.exe`` that answers with an HTML error page is no download.
    For names of text formats (``.js``, ``.vbs``, ``.hta``, ``.xml``, ``.sh``, …) text
    bytes are the same kind, so the delivery decides: as an attachment, or with a type a
    browser hands to its download manager, the name counts; inline with a type a
    browser shows or loads as a web resource (``text/*``, JavaScript, JSON, XML), it is
    an ordinary page or resource. With no bytes seen, the name decides alone, by the
    same delivery rule for text formats.
``type-mismatch``
    an executable or archive declared as something a browser renders (``text/*``,
    ``image/*``, HTML, JSON, XML, PDF, media, fonts; for scripts, which are text, only
    HTML, PDF, images and media), an executable declared as an archive or document
    type, or either of them named like a page, picture or PDF (``invoice.pdf`` that is
    a PE). A .docx served as text/html therefore counts: the server misstates what it
    sends, which is how document payloads slip past type-based filters.
``disposition``
    the response is an attachment. Alone it proves nothing (every "Download ZIP"
    button is one), so it is only evidence next to one of the above.

Deliberately not drive-bys: ordinary documents, images, media and plain archives
served with a fitting type and an ordinary name, attachments included; OLE and OOXML
documents served as themselves; compressed data (gzip, tar.gz).

Callers pass the decoded body (after Content-Encoding); raw gzip or brotli bytes are
treated as unknown content, so the name decides. Sniffing reads at most the first 36 KiB
of what it is given (ISO 9660 needs that much; everything else fits in SNIFF_BYTES).
Nothing here raises on any input: unreadable headers or bytes only make the answer say
less.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import unquote, unquote_to_bytes

__all__ = [
    "DANGEROUS_EXTENSIONS",
    "SNIFF_BYTES",
    "USER_GESTURE_EXTENSIONS",
    "DriveBy",
    "Payload",
    "bot_binary_name",
    "dangerous_extension",
    "filename_from",
    "find_drive_by",
    "sniff",
]

SNIFF_BYTES = 4096  # how much of a body sniff() needs (the caller may pass more or less)

type DangerLevel = Literal["dangerous", "user_gesture"]


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


# --- file names ---------------------------------------------------------------------------------

# Chromium's download danger levels, as listed in chromium
# components/safe_browsing/content/resources/download_file_types.asciipb (version_id 49).
# DANGEROUS is "dangerous", ALLOW_ON_USER_GESTURE is "user_gesture"; an extension takes its
# level on any platform where the file gives one (desktop, Android, ChromeOS). Archives
# (zip, rar, 7z, iso, gz, …) and everything else are NOT_DANGEROUS there, and absent here.
_DANGEROUS_ALL = frozenset({"class", "pyd", "spl", "swf"})
_DANGEROUS_WINDOWS = frozenset({
    "cfg", "dll", "drv", "gadget", "grp", "hta", "ini", "local", "manifest", "mof", "ocx", "scf",
    "sys", "url", "website", "xbap",
})
_DANGEROUS_MAC = frozenset({"applescript", "fileloc", "osas", "osax", "scpt", "scptd", "seplugin", "webloc"})

_GESTURE_ALL = frozenset({"crx", "efi", "jar", "jnlp", "oxt", "pl", "py", "pyc", "pyo", "pyw", "rb"})
_GESTURE_WINDOWS = frozenset({
    # programs, installers and what runs them
    "app", "application", "appref-ms", "bat", "cmd", "com", "cpi", "cpl", "exe", "inx", "isu", "job",
    "msc", "msi", "msp", "mst", "paf", "pif", "scr", "u3p", "xll",
    # scripts for Windows Script Host, PowerShell and the Microsoft shell
    "asp", "bas", "js", "jse", "msh", "msh1", "msh1xml", "msh2", "msh2xml", "mshxml", "ps1", "ps1xml",
    "ps2", "ps2xml", "psc1", "psc2", "sct", "vb", "vbe", "vbs", "vbscript", "ws", "wsc", "wsf", "wsh",
    # shortcuts, settings and the registry
    "inf", "ins", "isp", "lnk", "ops", "pcd", "plg", "prf", "prg", "reg", "rgs", "search-ms",
    "settingcontent-ms", "shb", "shs", "xnk",
    # help, web archives and markup that opens outside the browser
    "asx", "chi", "chm", "hlp", "htt", "mht", "mhtml", "partial", "rels", "xml", "xrm-ms", "xsd", "xsl",
    # mail, certificates, fonts, disk images
    "cer", "crt", "der", "eml", "fon", "img", "msg", "pst",
    # Microsoft Access and other Office helpers
    "accda", "accdb", "accde", "accdr", "ad", "ade", "adp", "fxp", "mad", "maf", "mag", "mam", "maq",
    "mar", "mas", "mat", "mau", "mav", "maw", "mda", "mdb", "mde", "mdt", "mdw", "mdz", "mmc", "slk",
    # Visio
    "vdx", "vsd", "vsdm", "vsdx", "vsmacros", "vss", "vssm", "vssx", "vst", "vstm", "vstx", "vsw",
    "vsx", "vtx",
})
_GESTURE_MAC = frozenset({
    "action", "as", "caction", "cdr", "command", "configprofile", "cpgz", "dart", "dc42", "definition",
    "diskcopy42", "dmg", "dmgpart", "dvdr", "dylib", "img", "imgpart", "internetconnect",
    "mobileconfig", "mpkg", "ndif", "networkconnect", "pax", "pkg", "service", "smi", "sparsebundle",
    "sparseimage", "toast", "udif", "wflow", "workflow", "xip",
})
_GESTURE_LINUX = frozenset({"deb", "desktop", "out", "pet", "pkg", "pup", "rpm", "run", "slp"})
_GESTURE_UNIX_SHELLS = frozenset({"bash", "csh", "ksh", "sh", "shar", "tcsh"})  # every platform but Windows
_GESTURE_ANDROID = frozenset({"apk", "dex"})  # apk also on Linux, both on ChromeOS

DANGEROUS_EXTENSIONS: frozenset[str] = _DANGEROUS_ALL | _DANGEROUS_WINDOWS | _DANGEROUS_MAC
USER_GESTURE_EXTENSIONS: frozenset[str] = (
    _GESTURE_ALL | _GESTURE_WINDOWS | _GESTURE_MAC | _GESTURE_LINUX | _GESTURE_UNIX_SHELLS | _GESTURE_ANDROID
) - DANGEROUS_EXTENSIONS

# File names IoT bots give their binaries (not Chromium's list): the architecture suffixes
# of Mirai's loader/bins and dlr builds (jgamblin/Mirai-Source-Code) and of WOPBOT samples
# (stamparm/hontel), and Mozi's own names (Black Lotus Labs, April 2020).
_BOT_SUFFIXES = frozenset({
    "arm", "arm4", "arm5", "arm6", "arm7", "i", "i586", "i686", "m68k", "mips", "mipsel", "mps", "mpsl",
    "ppc", "sh4", "spc", "sparc", "x86", "x86_64",
})
_BOT_NAMES = frozenset({"mozi.a", "mozi.m"})

# Extensions of text formats: text bytes under such a name are the same kind of thing,
# so the delivery (attachment or not, which type) decides whether it is a download.
_TEXT_FORMATS = frozenset({
    "applescript", "application", "appref-ms", "asp", "asx", "bas", "bash", "bat", "cfg", "cmd",
    "command", "configprofile", "crt", "cer", "csh", "desktop", "eml", "fileloc", "hta", "htt",
    "inf", "ini", "ins", "isp", "jnlp", "js", "jse", "ksh", "local", "manifest", "mht", "mhtml",
    "mobileconfig", "mof", "msh", "msh1", "msh1xml", "msh2", "msh2xml", "mshxml", "pl", "ps1", "ps1xml",
    "ps2", "ps2xml", "psc1", "psc2", "py", "pyw", "rb", "reg", "rels", "rgs", "scf", "sct",
    "search-ms", "settingcontent-ms", "sh", "shar", "slk", "tcsh", "url", "vb", "vbe", "vbs",
    "vbscript", "webloc", "website", "ws", "wsc", "wsf", "wsh", "xml", "xrm-ms", "xsd", "xsl",
})

# Files that run on a double click, looked for at the top level of a ZIP (the malspam
# shape: invoice.zip holding invoice.js). Narrower than Chromium's list on purpose:
# documents inside OOXML (.xml, .rels) and source trees are not droppers.
_RUNS_WHEN_OPENED = frozenset({
    "apk", "appx", "bat", "chm", "cmd", "com", "cpl", "exe", "hta", "img", "iso", "jar", "js", "jse",
    "lnk", "msi", "msix", "msp", "pif", "ps1", "reg", "scf", "scr", "url", "vbe", "vbs", "vhd", "vhdx",
    "wsf", "wsh",
})

# Names that say "page, picture, media, PDF": an executable or archive under such a name is
# disguised. Office names disguise only code (an OLE or OOXML document is a container), and
# plain-text names only binaries (a script is text).
_DOCUMENT_NAMES = frozenset({
    "avi", "bmp", "css", "gif", "htm", "html", "ico", "jpeg", "jpg", "json", "m4a", "mkv", "mov", "mp3",
    "mp4", "ogg", "pdf", "png", "svg", "tif", "tiff", "wav", "webm", "webp",
})
_OFFICE_NAMES = frozenset({"doc", "docx", "odt", "ods", "ppt", "pptx", "rtf", "xls", "xlsx"})
_TEXT_NAMES = frozenset({"csv", "log", "md", "text", "txt"})


def _basename(filename: str) -> str:
    """The last component of a name, as Windows would save it (no trailing dots or spaces)."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1].strip().rstrip(". ")


def _extension(filename: str | None) -> str | None:
    """The last extension of a file name, lower-case, without the dot."""
    if not filename:
        return None
    _, dot, ext = _basename(filename).rpartition(".")
    return ext.lower() if dot and ext else None


def dangerous_extension(filename: str) -> DangerLevel | None:
    """Chromium's danger level for a file name's last extension: "dangerous", "user_gesture" or None."""
    ext = _extension(filename)
    if ext is None:
        return None
    if ext in DANGEROUS_EXTENSIONS:
        return "dangerous"
    if ext in USER_GESTURE_EXTENSIONS:
        return "user_gesture"
    return None


def bot_binary_name(filename: str) -> bool:
    """Whether a file name is one IoT bots give their binaries (mirai.arm7, bot.mpsl, Mozi.m, …)."""
    base = _basename(filename).lower()
    return base in _BOT_NAMES or _extension(base) in _BOT_SUFFIXES


# --- Content-Disposition and the file name -----------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED_WORD = re.compile(r"=\?([^?]+)\?([bBqQ])\?([^?]*)\?=")


def _parameters(text: str) -> list[tuple[str, str, bool]]:
    """Name, value and whether it was quoted, for each ``name=value`` between semicolons."""
    params: list[tuple[str, str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        end_of_name = i
        while end_of_name < n and text[end_of_name] not in "=;":
            end_of_name += 1
        name = text[i:end_of_name].strip().lower()
        if end_of_name >= n or text[end_of_name] == ";":  # a word without "=": skipped
            i = end_of_name + 1
            continue
        j = end_of_name + 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == '"':
            chars: list[str] = []
            j += 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(text[j])
                j += 1
            value, quoted = "".join(chars), True  # an unterminated quote runs to the end
            semicolon = text.find(";", j)
        else:
            semicolon = text.find(";", j)
            value, quoted = text[j : n if semicolon < 0 else semicolon].strip(), False
        params.append((name, value, quoted))
        i = n if semicolon < 0 else semicolon + 1
    return params


def _utf8_seen_as_latin1(text: str) -> str:
    """Text whose UTF-8 bytes were read one byte a character, put right; other text unchanged."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def _decode_encoded_word(charset: str, encoding: str, data: str) -> str | None:
    """One RFC 2047 encoded word, or None when it does not decode."""
    try:
        if encoding in "bB":
            raw = base64.b64decode(data, validate=True)
        else:
            raw = binascii.a2b_qp(data.replace("_", " ").encode("ascii"), header=True)
        return raw.decode(charset)
    except (binascii.Error, ValueError, LookupError):  # UnicodeError is a ValueError
        return None


def _decode_filename(value: str) -> str | None:
    """A ``filename=`` value as Chromium reads it: raw UTF-8, RFC 2047 words, or %-escaped UTF-8."""
    if not value.isascii():
        return _utf8_seen_as_latin1(value)
    words = [_ENCODED_WORD.fullmatch(word) for word in value.split()]
    if words and all(words):
        decoded = [_decode_encoded_word(*m.groups()) for m in words if m]
        return "".join(d for d in decoded if d is not None) if None not in decoded else None
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None  # as Chromium: an escape that is not UTF-8 voids the parameter


def _decode_ext_value(value: str, quoted: bool) -> str | None:
    """A ``filename*=`` value (RFC 8187: charset'language'%-encoded), or None when invalid."""
    parts = value.split("'")
    if quoted or len(parts) != 3 or not parts[0] or not parts[2] or not parts[2].isascii():
        return None
    try:
        return unquote_to_bytes(parts[2]).decode(parts[0])
    except (LookupError, ValueError):
        return None


def _safe_name(name: str | None) -> str | None:
    """The name a browser would save under: last path component, no control characters."""
    if not name:
        return None
    cleaned = _basename(_CONTROL_CHARACTERS.sub("", name))
    return cleaned or None


def filename_from(url_path: str, content_disposition: str | None) -> tuple[str | None, bool]:
    """The download's file name and whether it is an attachment (RFC 6266, else the URL's last segment)."""
    attachment = False
    name: str | None = None
    if content_disposition:
        header = content_disposition
        kind, _, rest = header.partition(";")
        kind = kind.strip()
        if kind and _TOKEN.fullmatch(kind):  # else malformed: the whole header is parameters (inline)
            attachment = kind.lower() != "inline"  # unknown types count as attachment (RFC 6266 4.2)
            header = rest
        plain: str | None = None
        extended: str | None = None
        for key, value, quoted in _parameters(header):
            if key == "filename" and not plain:
                plain = _decode_filename(value)
            elif key == "filename*" and not extended:
                extended = _decode_ext_value(value, quoted)
        name = _safe_name(extended) or _safe_name(plain)
    if name is None:
        segment = url_path.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1].split(";", 1)[0]
        name = _safe_name(unquote(segment, errors="replace").replace("/", "_"))
    return name, attachment


# --- sniffing: executables and archives ---------------------------------------------------------


def _u16(data: bytes, offset: int, order: Literal["little", "big"]) -> int:
    return int.from_bytes(data[offset : offset + 2], order)


def _u32(data: bytes, offset: int, order: Literal["little", "big"]) -> int:
    return int.from_bytes(data[offset : offset + 4], order)


_ENDIAN_WORD: dict[str, str] = {"little": "little-endian", "big": "big-endian"}

# ELF e_machine: (name in labels, arch). From the ELF specification (System V gABI).
_ELF_MACHINES: dict[int, tuple[str, str]] = {
    2: ("SPARC", "sparc"),
    3: ("x86", "x86"),
    4: ("Motorola 68000", "m68k"),
    8: ("MIPS", "mips"),
    10: ("MIPS", "mips"),  # MIPS RS3000 little-endian
    15: ("PA-RISC", "parisc"),
    18: ("SPARC", "sparc"),  # SPARC32PLUS
    20: ("PowerPC", "ppc"),
    21: ("PowerPC64", "ppc64"),
    22: ("IBM S/390", "s390"),
    40: ("ARM", "arm"),
    42: ("Renesas SH", "sh"),
    43: ("SPARC V9", "sparc64"),
    50: ("IA-64", "ia64"),
    62: ("x86-64", "x86_64"),
    92: ("OpenRISC", "or1k"),
    94: ("Xtensa", "xtensa"),
    183: ("AArch64", "aarch64"),
    243: ("RISC-V", "riscv"),
    258: ("LoongArch", "loongarch"),
}
_ELF_BYTE_ORDERS: dict[int, Literal["little", "big"]] = {1: "little", 2: "big"}
_ELF_TYPES = {1: "relocatable object", 2: "executable", 3: "executable", 4: "core dump"}


def _elf(head: bytes) -> Payload:
    """An ELF header, trusting as little of it as bots leave intact."""
    n = len(head)
    bits = {1: 32, 2: 64}.get(head[4]) if n > 4 else None
    declared = _ELF_BYTE_ORDERS.get(head[5]) if n > 5 else None
    machine: tuple[str, str] | None = None
    order = declared
    e_type = 2
    notes: list[str] = []
    if n >= 20:
        # Some bots corrupt e_ident to trip analysers: when the declared byte order gives
        # no known machine, try the other one.
        orders: tuple[Literal["little", "big"], ...] = ("little", "big")
        for candidate in orders[::-1] if declared == "big" else orders:
            machine = _ELF_MACHINES.get(_u16(head, 18, candidate))
            if machine is not None:
                order = candidate
                e_type = _u16(head, 16, candidate)
                break
        if machine is None:
            notes.append(f"unknown machine 0x{_u16(head, 18, declared or 'little'):04x}")
        elif order != declared:
            notes.append("malformed header")
    else:
        notes.append("header truncated")
    if bits is None and n > 4:
        notes.append("malformed class")
    if head.find(b"UPX!", 0, 1024) >= 0:  # UPX's header follows the program headers
        notes.append("UPX-packed")

    arch = machine[1] if machine else None
    if arch == "mips" and bits == 64:
        arch = "mips64"
    if arch is not None and order == "little" and arch in ("mips", "mips64", "ppc64"):
        arch += "el" if arch.startswith("mips") else "le"
    if arch == "s390" and bits == 64:
        arch = "s390x"

    words = ["ELF"]
    if bits:
        words.append(f"{bits}-bit")
    if machine:
        words.append(machine[0])
        if order:
            words.append(_ENDIAN_WORD[order])
    words.append(_ELF_TYPES.get(e_type, "executable"))
    label = " ".join(words) + "".join(f", {note}" for note in notes)
    return Payload("elf", label, executable=e_type != 4, arch=arch)


# PE machine: (name in labels, arch). From the Microsoft PE/COFF specification.
_PE_MACHINES: dict[int, tuple[str, str]] = {
    0x014C: ("x86", "x86"),
    0x0200: ("Itanium", "ia64"),
    0x01C0: ("ARM", "arm"),
    0x01C4: ("ARM Thumb-2", "arm"),
    0x8664: ("x86-64", "x86_64"),
    0xAA64: ("ARM64", "aarch64"),
}
_PE_FORMATS = {0x10B: "PE32", 0x20B: "PE32+"}
_IMAGE_FILE_DLL = 0x2000
_EFI_SUBSYSTEMS = frozenset({10, 11, 12, 13})


def _looks_binary(chunk: bytes) -> bool:
    """Whether a chunk holds a byte no text file has (NUL or a control other than whitespace and ESC)."""
    return len(chunk.translate(None, _CONTROL_BYTES)) != len(chunk)


def _pe(head: bytes) -> Payload | None:
    """An MZ header, with the PE header it points to when that is within head."""
    n = len(head)
    if not _looks_binary(head[:64]):
        return None  # "MZ…" text, not a DOS header (which always holds NULs or binary fields)
    if n < 64:
        return Payload("pe", "DOS/Windows executable (MZ header, truncated)", True)
    pe_offset = _u32(head, 0x3C, "little")
    if pe_offset + 4 <= n and head[pe_offset : pe_offset + 4] == b"PE\0\0":
        machine = _PE_MACHINES.get(_u16(head, pe_offset + 4, "little")) if pe_offset + 6 <= n else None
        flags = _u16(head, pe_offset + 22, "little") if pe_offset + 24 <= n else 0
        fmt = _PE_FORMATS.get(_u16(head, pe_offset + 24, "little")) if pe_offset + 26 <= n else None
        subsystem = _u16(head, pe_offset + 24 + 68, "little") if pe_offset + 94 <= n else 0
        if flags & _IMAGE_FILE_DLL:
            what = "Windows DLL"
        elif subsystem in _EFI_SUBSYSTEMS:
            what = "EFI application"
        else:
            what = "Windows executable"
        details = [d for d in (fmt, machine[0] if machine else None) if d]
        label = f"{what} ({', '.join(details)})" if details else what
        return Payload("pe", label, True, machine[1] if machine else None)
    if pe_offset + 2 <= n and head[pe_offset : pe_offset + 2] in (b"NE", b"LE", b"LX"):
        header = head[pe_offset : pe_offset + 2].decode("ascii")
        return Payload("pe", f"16-bit Windows or OS/2 executable ({header})", True)
    if pe_offset + 4 > n:
        return Payload("pe", "Windows executable (MZ header; its PE header lies beyond the bytes seen)", True)
    return Payload("pe", "DOS executable (MZ header without a PE header)", True)


class _ZipEntry(NamedTuple):
    name: str
    method: int  # 0 stored, 8 deflated
    data: bytes  # as much of the (compressed) data as head holds


_LOCAL_HEADER = b"PK\x03\x04"
_ZIP_SCAN_LIMIT = 64


def _zip_entries(head: bytes) -> list[_ZipEntry]:
    """The local file entries at the start of a ZIP, as far as head reaches."""
    entries: list[_ZipEntry] = []
    n = len(head)
    pos = 4 if head[:4] in (b"PK\x07\x08", b"PK00") else 0  # spanned-archive markers
    while len(entries) < _ZIP_SCAN_LIMIT and pos + 30 <= n and head.startswith(_LOCAL_HEADER, pos):
        flags = _u16(head, pos + 6, "little")
        method = _u16(head, pos + 8, "little")
        size = _u32(head, pos + 18, "little")
        name_end = pos + 30 + _u16(head, pos + 26, "little")
        if name_end > n:
            break
        encoding = "utf-8" if flags & 0x800 else "cp437"
        name = head[pos + 30 : name_end].decode(encoding, "replace")
        data_start = name_end + _u16(head, pos + 28, "little")
        streamed = bool(flags & 0x8)  # a data descriptor follows the data
        sized = not (streamed and size == 0) and size != 0xFFFFFFFF
        data_end = data_start + size if sized else n
        entries.append(_ZipEntry(name, method, head[data_start:data_end]))
        if sized and not streamed:
            pos = data_end
        else:
            # Streamed entries (as the jar tool writes them) may give no size up front and
            # end in a descriptor: the next local header is the next signature.
            pos = head.find(_LOCAL_HEADER, data_end if sized else data_start)
            if pos < 0:
                break
    return entries


def _inflated(entry: _ZipEntry) -> bytes:
    """The start of an entry's content, when it is stored or deflated and head holds it."""
    if entry.method == 0:
        return entry.data[:SNIFF_BYTES]
    if entry.method == 8:
        try:
            return zlib.decompressobj(-15).decompress(entry.data, SNIFF_BYTES)
        except zlib.error:
            return b""
    return b""


_DEX_NAME = re.compile(r"classes\d*\.dex")
_APPX_NAMES = frozenset({"appxmanifest.xml", "appxblockmap.xml", "appxsignature.p7x", "appxmetadata/"})


def _zip(head: bytes) -> tuple[Payload, str | None]:
    """A ZIP told apart by its first entries: APK, JAR, MSIX, OOXML, OpenDocument or plain."""
    if head.startswith(b"PK\x05\x06"):
        return Payload("zip", "ZIP archive (empty)", False), None
    entries = _zip_entries(head)
    names = [e.name.lower() for e in entries]
    manifest = next((e for e in entries if e.name.lower() == "meta-inf/manifest.mf"), None)
    manifest_text = _inflated(manifest) if manifest else b""
    if (
        any(n in ("androidmanifest.xml", "resources.arsc") or _DEX_NAME.fullmatch(n) for n in names)
        or b"AndroidManifest.xml" in manifest_text
        or b"(Android" in manifest_text  # Created-By of Android's signing tools
    ):
        return Payload("apk", "Android app (APK)", True), None
    if any(n in _APPX_NAMES or n.startswith("appxmetadata/") for n in names):
        return Payload("appx", "Windows app package (MSIX/APPX)", True), None
    if manifest is not None or any(n.endswith(".class") for n in names):
        runnable = ", runnable" if b"Main-Class:" in manifest_text else ""
        return Payload("jar", f"Java archive (JAR{runnable})", True), None
    if "[content_types].xml" in names:
        return Payload("zip", "Office document (OOXML)", False), None
    if entries and entries[0].name == "mimetype":
        media = _inflated(entries[0])
        if media.startswith(b"application/vnd.oasis.opendocument."):
            return Payload("zip", "OpenDocument file", False), None
        if media.startswith(b"application/epub+zip"):
            return Payload("zip", "EPUB e-book", False), None
    member = next(
        (e.name for e in entries if "/" not in e.name and _extension(e.name) in _RUNS_WHEN_OPENED), None
    )
    if member is not None:
        return Payload("zip", f"ZIP archive containing {_safe_name(member)}", False), member
    first = _safe_name(entries[0].name) if entries else None
    return Payload("zip", f"ZIP archive (first file: {first})" if first else "ZIP archive", False), None


def _clsid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


_INSTALLER_CLSIDS: dict[bytes, str] = {
    _clsid("000c1084-0000-0000-c000-000000000046"): "Windows Installer package (MSI)",
    _clsid("000c1086-0000-0000-c000-000000000046"): "Windows Installer patch (MSP)",
    _clsid("000c1082-0000-0000-c000-000000000046"): "Windows Installer transform (MST)",
}
_DOCUMENT_CLSIDS: dict[bytes, str] = {
    _clsid("00020906-0000-0000-c000-000000000046"): "Word 97-2003 document",
    _clsid("00020820-0000-0000-c000-000000000046"): "Excel 97-2003 workbook",
    _clsid("64818d10-4f9b-11cf-86ea-00aa00b929e8"): "PowerPoint 97-2003 presentation",
    _clsid("00020d0b-0000-0000-c000-000000000046"): "Outlook message",
}
_OLE_FREE_SECTOR = 0xFFFFFFFA  # and above: end of chain, free, FAT or DIFAT markers


def _msi_stream_name(name: str) -> bool:
    """Whether a directory entry name uses MSI's packed stream-name alphabet (U+3800–U+4840)."""
    return any("\u3800" <= c <= "\u4840" for c in name)


def _ole(head: bytes) -> Payload:
    """An OLE2 compound file, an MSI when its root directory entry is within head and says so."""
    n = len(head)
    if n < 0x34:
        return Payload("ole", "OLE2 compound file (header truncated)", False)
    shift = _u16(head, 0x1E, "little")
    sector = 1 << shift if 7 <= shift <= 16 else 512
    first_directory = _u32(head, 0x30, "little")
    directory = (first_directory + 1) * sector
    if first_directory >= _OLE_FREE_SECTOR or directory + 128 > n:
        unseen = "its directory lies beyond the bytes seen; MSI cannot be told apart"
        return Payload("ole", f"OLE2 compound file ({unseen})", False)
    clsid = head[directory + 0x50 : directory + 0x60]
    installer = _INSTALLER_CLSIDS.get(clsid)
    if installer is not None:
        return Payload("msi", installer, True)
    for entry in range(directory, min(directory + sector, n - 127), 128):
        length = min(_u16(head, entry + 64, "little"), 64)
        if _msi_stream_name(head[entry : entry + length].decode("utf-16-le", "replace")):
            return Payload("msi", "Windows Installer database (MSI)", True)
    document = _DOCUMENT_CLSIDS.get(clsid)
    return Payload("ole", f"OLE2 compound document ({document})" if document else "OLE2 compound file", False)


_MACHO_MAGICS: dict[bytes, tuple[Literal["little", "big"], int]] = {
    b"\xfe\xed\xfa\xce": ("big", 32),
    b"\xce\xfa\xed\xfe": ("little", 32),
    b"\xfe\xed\xfa\xcf": ("big", 64),
    b"\xcf\xfa\xed\xfe": ("little", 64),
}
# Mach-O cputype: (name in labels, arch). From Apple's <mach/machine.h>.
_MACHO_CPUS: dict[int, tuple[str, str]] = {
    7: ("x86", "x86"),
    0x01000007: ("x86-64", "x86_64"),
    12: ("ARM", "arm"),
    0x0100000C: ("arm64", "aarch64"),
    0x0200000C: ("arm64_32", "aarch64"),
    18: ("PowerPC", "ppc"),
    0x01000012: ("PowerPC64", "ppc64"),
}
_MACHO_FILETYPES = {
    1: "object file", 2: "executable", 6: "dynamic library", 8: "bundle", 11: "kernel extension",
}
_FAT_MAGICS = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf")
_MAX_FAT_ARCHS = 30  # above this, CAFEBABE's second word is a Java class version (as file(1) decides)


def _macho(head: bytes, order: Literal["little", "big"], bits: int) -> Payload:
    cpu = _MACHO_CPUS.get(_u32(head, 4, order)) if len(head) >= 8 else None
    filetype = _MACHO_FILETYPES.get(_u32(head, 12, order), "executable") if len(head) >= 16 else "executable"
    words = ["Mach-O", f"{bits}-bit"] + ([cpu[0]] if cpu else []) + [filetype]
    return Payload("mach-o", " ".join(words), True, cpu[1] if cpu else None)


def _fat_or_class(head: bytes) -> Payload:
    """CAFEBABE: a universal Mach-O binary or a Java class file, told apart by the second word."""
    if len(head) < 8:
        return Payload("mach-o", "Mach-O universal binary or Java class file (truncated)", True)
    count = _u32(head, 4, "big")
    if head[:4] == _FAT_MAGICS[1] or 1 <= count <= _MAX_FAT_ARCHS:
        step = 32 if head[:4] == _FAT_MAGICS[1] else 20
        cpus = [
            _MACHO_CPUS.get(_u32(head, offset, "big"))
            for offset in range(8, min(8 + count * step, len(head) - 3), step)
        ]
        known = [c for c in cpus if c]
        names = ", ".join(c[0] for c in known)
        label = f"Mach-O universal binary ({count} architectures{': ' + names if names else ''})"
        return Payload("mach-o", label, True, known[0][1] if len(known) == 1 and count == 1 else None)
    major, minor = _u16(head, 6, "big"), _u16(head, 4, "big")
    return Payload("class", f"Java class file (format {major}.{minor})", True)


# Fixed signatures at offset 0: (magic, kind, label, executable).
_SIMPLE_MAGICS: tuple[tuple[bytes, str, str, bool], ...] = (
    (b"Rar!\x1a\x07\x01\x00", "rar", "RAR archive (version 5)", False),
    (b"Rar!\x1a\x07\x00", "rar", "RAR archive", False),
    (b"7z\xbc\xaf\x27\x1c", "7z", "7-Zip archive", False),
    (b"MSCF\0\0\0\0", "cab", "Microsoft Cabinet archive (CAB)", False),
    (b"vhdxfile", "vhd", "virtual hard disk (VHDX)", False),
    (b"conectix", "vhd", "virtual hard disk (VHD)", False),
    (b"L\0\0\0" + _clsid("00021401-0000-0000-c000-000000000046"), "lnk", "Windows shortcut (LNK)", True),
)
_ISO_OFFSETS = (0x8001, 0x8801, 0x9001)
_LOOK_LIMIT = _ISO_OFFSETS[-1] + 5  # no signature lies further in
_MAGIC_FIRST_BYTES = frozenset(
    {b"\x7f", b"M", b"P", b"\xd0", b"d"}
    | {m[:1] for m in _MACHO_MAGICS}
    | {m[:1] for m in _FAT_MAGICS}
    | {m[0][:1] for m in _SIMPLE_MAGICS}
)


def _binary(head: bytes) -> tuple[Payload | None, str | None]:
    """An executable or archive recognised by its magic bytes, and a runnable ZIP member if any."""
    if head[:1] not in _MAGIC_FIRST_BYTES and len(head) <= _ISO_OFFSETS[0]:
        return None, None  # the common case (text, images) in one look
    magic = head[:4]
    if magic == b"\x7fELF":
        return _elf(head), None
    if head[:2] == b"MZ":
        return _pe(head), None
    if head[:2] == b"PK" and head[2:4] in (b"\x03\x04", b"\x05\x06", b"\x07\x08", b"00"):
        return _zip(head)
    if head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return _ole(head), None
    if magic in _MACHO_MAGICS:
        return _macho(head, *_MACHO_MAGICS[magic]), None
    if magic in _FAT_MAGICS:
        return _fat_or_class(head), None
    if head[:5] == b"dex\n0":
        version = head[4:7].decode("ascii", "replace")
        return Payload("dex", f"Android DEX bytecode (version {version})", True), None
    for signature, kind, label, executable in _SIMPLE_MAGICS:
        if head.startswith(signature):
            return Payload(kind, label, executable), None
    if any(head[offset : offset + 5] == b"CD001" for offset in _ISO_OFFSETS):
        return Payload("iso", "ISO 9660 disk image", False), None
    return None, None


# --- sniffing: text -----------------------------------------------------------------------------

# Bytes that never occur in text: NUL and the C0 controls but tab, newlines, form feed, ESC.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"
_SHELLS = frozenset({b"sh", b"bash", b"ash", b"dash", b"ksh", b"mksh", b"zsh", b"busybox", b"csh", b"tcsh"})
_SHEBANG = re.compile(rb"#![ \t]*(\S+)(?:[ \t]+(\S+))?")
_FIRST_LINE = re.compile(rb"^[ \t]*([^#\s].*)$", re.M)  # the first line that is neither blank nor a comment
_FIRST_COMMAND = re.compile(
    rb"(?:cd\s+/|(?:/bin/)?busybox\s|wget\s|curl\s|tftp\s|ftpget\s|chmod\s|rm\s+-rf\s)"
)
_DOWNLOADER = re.compile(rb"(?<![\w.-])(?:/bin/busybox\s+|busybox\s+)?(wget|curl|tftp|ftpget)(?=\s)")
_CHMOD = re.compile(rb"(?<![\w-])chmod\s+(?:-R\s+)?(?:[0-7]{3,4}|[ugoa]*\+[rw]*x)")
_PIPE_SHELL = re.compile(rb"\|\s*(?:/bin/)?(?:ba|da|a)?sh\b")
_WGET_TO_SHELL = re.compile(rb"wget\s[^\n;|]*-O\s?-\s*\|\s*(?:/bin/)?(?:ba|da|a)?sh\b")
_RUN = re.compile(rb"(?:^|[;&|(])\s*(?:(?:/bin/)?(?:ba|da|a)?sh\s+[\w./-]|\./[\w.-])", re.M)
_BUSYBOX = re.compile(rb"/bin/busybox\s+\w")
_PS_RUN = re.compile(rb"\b(iex|invoke-expression)\b", re.I)
_PS_FETCH = re.compile(
    rb"\b(net\.webclient|downloadstring|downloaddata|downloadfile|invoke-webrequest|invoke-restmethod"
    rb"|iwr|irm|start-bitstransfer)\b",
    re.I,
)
_PS_START = re.compile(rb"\bstart-process\b", re.I)
# Substring searches cost more than the rest of sniffing a page, so text is first checked
# for words that every match must contain: at least one of these, or no match at all.
_DROPPER_ANCHORS = (b"wget", b"chmod", b"busybox", b"dvrHelper")
_CRADLE_ANCHORS = (b"iex", b"invoke-", b"start-process")


def _as_text(head: bytes) -> bytes | None:
    """The first SNIFF_BYTES of head as UTF-8 text, or None when they are not text."""
    sample = head[:SNIFF_BYTES]
    if sample[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 (PowerShell's own default)
        codec = "utf-16-le" if sample[:2] == b"\xff\xfe" else "utf-16-be"
        sample = sample[2 : len(sample) & ~1].decode(codec, "replace").encode("utf-8", "replace")
    elif sample[:3] == b"\xef\xbb\xbf":
        sample = sample[3:]
    # A NUL anywhere, or any other control byte in the first KiB, makes it binary.
    if not sample or sample.find(0) >= 0 or _looks_binary(sample[:1024]):
        return None
    return sample


def _markup(text: bytes) -> str | None:
    """Whether text is plainly markup (HTML, XML, SVG) or JSON: "markup", "json" or None."""
    start = text.lstrip()[:32].lower()
    if start.startswith(b"<"):
        return "markup"  # HTML, XML, SVG, or anything else a tag opens: never a shell script
    if start[:1] in (b"{", b"["):
        return "json"
    return None


def _starts_like_shell(text: bytes) -> bool:
    """Whether text opens with a shell #! line or, past blank and comment lines, an IoT-dropper command."""
    shebang = _SHEBANG.match(text)
    if shebang:
        interpreter = shebang.group(1).rsplit(b"/", 1)[-1]
        if interpreter == b"env" and shebang.group(2):
            interpreter = shebang.group(2).rsplit(b"/", 1)[-1]
        return interpreter in _SHELLS
    first = _FIRST_LINE.search(text)
    return first is not None and _FIRST_COMMAND.match(first.group(1)) is not None


def _shell(text: bytes) -> Payload | None:
    """A shell script or dropper: "#!" sh, a first command like "cd /tmp", or the bots' download-and-run."""
    starts_like_shell = _starts_like_shell(text)
    if not starts_like_shell and not any(word in text for word in _DROPPER_ANCHORS):
        return None  # none of the words every dropper shape below needs
    downloaders = list(dict.fromkeys(m.group(1).decode() for m in _DOWNLOADER.finditer(text)))
    chmod = _CHMOD.search(text) is not None
    piped = _PIPE_SHELL.search(text) is not None
    runs = _RUN.search(text) is not None
    busybox = _BUSYBOX.search(text) is not None
    dvr_helper = b"dvrHelper" in text
    if starts_like_shell:
        dropper = (bool(downloaders) and (chmod or piped or runs)) or dvr_helper
    else:
        # Inside other text only the bots' own shapes count, not "curl … | sh" in a README.
        dropper = (
            dvr_helper
            or (busybox and (bool(downloaders) or chmod))
            or (bool(downloaders) and chmod and runs)
            or _WGET_TO_SHELL.search(text) is not None
        )
        if not dropper:
            return None
    if not dropper:
        return Payload("shell", "shell script", True)
    seen = (["busybox"] if busybox else []) + downloaders + (["chmod"] if chmod else [])
    seen += ["piped to sh"] if piped else ["runs it"] if runs else []
    seen += ["dvrHelper"] if dvr_helper else []
    return Payload("shell", f"shell script downloader ({', '.join(seen)})", True)


def _powershell(text: bytes) -> Payload | None:
    """A PowerShell download cradle: IEX of a download, or a download that is started."""
    lowered = text.lower()
    if not any(word in lowered for word in _CRADLE_ANCHORS):
        return None
    run = _PS_RUN.search(text)
    fetch = _PS_FETCH.search(text)
    if fetch is None or (run is None and _PS_START.search(text) is None):
        return None
    matches = (*_PS_RUN.finditer(text), *_PS_FETCH.finditer(text))
    seen = list(dict.fromkeys(m.group(0).decode() for m in matches))
    return Payload("powershell", f"PowerShell download cradle ({', '.join(seen)})", True)


# --- what the bytes are -------------------------------------------------------------------------

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
_TEXTUAL = frozenset({"markup", "json", "text"})


class _Seen(NamedTuple):
    payload: Payload | None
    harmless: str | None  # "image", "pdf", "font", "media", "markup", "json" or "text" when plainly that
    member: str | None  # a top-level ZIP entry that runs when opened


_NOTHING_SEEN = _Seen(None, None, None)


def _examine(head: bytes) -> _Seen:
    """What head is: a payload, plainly something harmless, or unknown (both None)."""
    payload, member = _binary(head)
    if payload is not None:
        return _Seen(payload, None, member)
    if head[:1] in _HARMLESS_FIRST_BYTES:
        for magic, kind in _HARMLESS_MAGICS:
            if head.startswith(magic):
                return _Seen(None, kind, None)
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_KINDS:
        return _Seen(None, _RIFF_KINDS[head[8:12]], None)
    if head[4:8] == b"ftyp":  # ISO base media: MP4, MOV, HEIC, AVIF
        return _Seen(None, "media", None)
    text = _as_text(head)
    if text is None:
        return _NOTHING_SEEN  # compressed, encrypted or unknown binary
    markup = _markup(text)
    if markup is not None:
        return _Seen(None, markup, None)
    script = _shell(text) or _powershell(text)
    return _Seen(script, None if script else "text", None)


def sniff(head: bytes) -> Payload | None:
    """The executable or archive that head starts, told from its bytes alone; None for anything else."""
    return _examine(bytes(head[:_LOOK_LIMIT])).payload


# --- drive-by -----------------------------------------------------------------------------------

_INLINE_TYPES = frozenset({
    "application/ecmascript", "application/javascript", "application/json", "application/x-javascript",
    "application/xhtml+xml", "application/xml",
})
_RENDERED_PREFIXES = ("image/", "audio/", "video/", "font/")
_RENDERED_TYPES = frozenset({"application/pdf", "application/xhtml+xml", "text/html"})
_CODE_KINDS = frozenset({"elf", "pe", "mach-o", "dex", "class", "lnk", "shell", "powershell"})
_ARCHIVE_OR_DOCUMENT_TYPES = frozenset({
    "application/gzip", "application/msword", "application/pdf", "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint", "application/vnd.rar", "application/x-7z-compressed",
    "application/x-gzip", "application/x-rar-compressed", "application/x-tar", "application/x-zip-compressed",
    "application/zip",
})
_DOCUMENT_TYPE_PREFIXES = ("application/vnd.openxmlformats-", "application/vnd.oasis.opendocument.")


def _media_type(value: str) -> str | None:
    """A Content-Type's media type, lower-case and without parameters; None when it is not one."""
    media = value.split(";", 1)[0].strip().lower()
    kind, slash, subtype = media.partition("/")
    return media if slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(subtype) else None


def _loads_inline(declared: str | None) -> bool:
    """Whether a browser shows or loads this type in the page instead of downloading it."""
    if declared is None:
        return False
    return (
        declared.startswith("text/")
        or declared in _INLINE_TYPES
        or declared.endswith(("+json", "+xml"))
    )


def _disagrees(payload: Payload, declared: str | None, filename: str | None) -> bool:
    """Whether the declared type or the file name claims something other than what the bytes are."""
    textual = payload.kind in ("shell", "powershell")
    code = payload.kind in _CODE_KINDS
    if declared is not None:
        if declared.startswith(_RENDERED_PREFIXES) or declared in _RENDERED_TYPES:
            return True
        if not textual and _loads_inline(declared):
            return True
        if code and (declared in _ARCHIVE_OR_DOCUMENT_TYPES or declared.startswith(_DOCUMENT_TYPE_PREFIXES)):
            return True
    ext = _extension(filename)
    return ext in _DOCUMENT_NAMES or (code and ext in _OFFICE_NAMES) or (not textual and ext in _TEXT_NAMES)


def _name_stands(ext: str | None, bot: bool, seen: _Seen, attachment: bool, declared: str | None) -> bool:
    """Whether a risky file name still counts once the bytes (if any) and the delivery are known."""
    if seen.payload is not None:
        return True
    text_format = not bot and ext in _TEXT_FORMATS
    if seen.harmless is None:  # no bytes, or bytes that say nothing
        return not (text_format and not attachment and _loads_inline(declared))
    if not text_format or seen.harmless not in _TEXTUAL:
        return False  # harmless and of another kind: an error page, a picture, …
    # Text under a text format's name: a download only if the browser would save it.
    return attachment or not (declared is None or _loads_inline(declared))


def _with_article(label: str) -> str:
    return ("an " if label[:1].lower() in "aeiou" else "a ") + label


def _detail(payload: Payload | None, filename: str | None, level: str | None, delivery: str) -> str:
    """One sentence naming what is delivered and how."""
    if payload is not None:
        what = _with_article(payload.label) + (f" ({filename})" if filename else "")
    elif level is None:  # the name is a bot binary name
        what = f"a file named {filename}, a name IoT bots give their binaries,"
    else:
        why = "a file type browsers refuse to open" if level == "dangerous" else "a file type that runs code"
        what = f"a file named {filename} (.{_extension(filename)}: {why})"
    return f"{what} {delivery}"


def find_drive_by(*, url_path: str, headers: Sequence[tuple[str, str]], head: bytes) -> DriveBy | None:
    """The drive-by download a response delivers, judged by URL path, headers and first bytes; else None."""
    content_type: str | None = None
    disposition: str | None = None
    for name, value in headers:
        key = name.strip().lower()
        if key == "content-type":
            content_type = value  # the last one wins, as in browsers
        elif key == "content-disposition" and disposition is None:
            disposition = value
    declared = _media_type(content_type) if content_type is not None else None
    filename, attachment = filename_from(url_path, disposition)
    seen = _examine(bytes(head[:_LOOK_LIMIT])) if head else _NOTHING_SEEN
    payload = seen.payload

    level = dangerous_extension(filename) if filename else None
    bot = filename is not None and bot_binary_name(filename)
    risky_name = level is not None or bot
    name_counts = risky_name and _name_stands(_extension(filename), bot, seen, attachment, declared)
    content = (payload is not None and payload.executable) or seen.member is not None
    mismatch = payload is not None and _disagrees(payload, declared, filename)
    if not (content or name_counts or mismatch):
        return None

    evidence = tuple(
        code
        for code, holds in (
            ("content", content),
            ("disposition", attachment),
            ("extension", name_counts and level is not None),
            ("bot-name", name_counts and bot),
            ("type-mismatch", mismatch),
        )
        if holds
    )
    if attachment:
        delivery = f"sent as a download ({declared or 'no content type'})"
    else:
        delivery = f"served as {declared}" if declared else "served without a content type"
    detail = _detail(payload, filename, level if name_counts else None, delivery)
    return DriveBy(payload, filename, evidence, declared, detail)
