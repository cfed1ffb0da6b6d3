"""Executables and archives told by their magic bytes, and what their headers say.

ELF with its architecture (as bots leave it: corrupted byte orders, UPX), PE, Mach-O and
universal binaries, Java classes, DEX, LNK; ZIP told apart by its first entries (JAR, APK,
MSIX, OOXML, OpenDocument, a runnable file at the top level); OLE2 told apart as MSI;
RAR, 7z, CAB, VHD and ISO 9660. Only the bytes given are read; a header that points
beyond them is reported as such.
"""

from __future__ import annotations

import re
import uuid
import zlib
from typing import Literal, NamedTuple

from clickguard.inspection.payloads.file_names import extension, safe_name
from clickguard.inspection.payloads.results import SNIFF_BYTES, Payload

# Files that run on a double click, looked for at the top level of a ZIP (the malspam
# shape: invoice.zip holding invoice.js). Narrower than Chromium's list on purpose:
# documents inside OOXML (.xml, .rels) and source trees are not droppers.
_RUNS_WHEN_OPENED = frozenset({
    "apk", "appx", "bat", "chm", "cmd", "com", "cpl", "exe", "hta", "img", "iso", "jar", "js", "jse",
    "lnk", "msi", "msix", "msp", "pif", "ps1", "reg", "scf", "scr", "url", "vbe", "vbs", "vhd", "vhdx",
    "wsf", "wsh",
})


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


# Bytes that never occur in text: NUL and the C0 controls but tab, newlines, form feed, ESC.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"


def looks_binary(chunk: bytes) -> bool:
    """Whether a chunk holds a byte no text file has (NUL or a control other than whitespace and ESC)."""
    return len(chunk.translate(None, _CONTROL_BYTES)) != len(chunk)


def _pe(head: bytes) -> Payload | None:
    """An MZ header, with the PE header it points to when that is within head."""
    n = len(head)
    if not looks_binary(head[:64]):
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
        (e.name for e in entries if "/" not in e.name and extension(e.name) in _RUNS_WHEN_OPENED), None
    )
    if member is not None:
        return Payload("zip", f"ZIP archive containing {safe_name(member)}", False), member
    first = safe_name(entries[0].name) if entries else None
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
LOOK_LIMIT = _ISO_OFFSETS[-1] + 5  # no signature lies further in
_MAGIC_FIRST_BYTES = frozenset(
    {b"\x7f", b"M", b"P", b"\xd0", b"d"}
    | {m[:1] for m in _MACHO_MAGICS}
    | {m[:1] for m in _FAT_MAGICS}
    | {m[0][:1] for m in _SIMPLE_MAGICS}
)


def executable_or_archive(head: bytes) -> tuple[Payload | None, str | None]:
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
