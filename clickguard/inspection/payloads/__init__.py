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

The modules: `results` (`Payload`, `DriveBy`); `file_names` (danger levels, bot names);
`disposition` (`filename_from`); `magic_bytes` (executables and archives); `droppers`
(shell and PowerShell scripts in text); `sniffing` (`sniff`: what the bytes are);
`drive_by` (`find_drive_by`).
"""

from clickguard.inspection.payloads.disposition import filename_from
from clickguard.inspection.payloads.drive_by import find_drive_by
from clickguard.inspection.payloads.file_names import (
    DANGEROUS_EXTENSIONS,
    USER_GESTURE_EXTENSIONS,
    bot_binary_name,
    dangerous_extension,
)
from clickguard.inspection.payloads.results import SNIFF_BYTES, DriveBy, Payload
from clickguard.inspection.payloads.sniffing import sniff

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
