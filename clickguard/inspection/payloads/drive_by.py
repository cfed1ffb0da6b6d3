"""The drive-by verdict: the bytes, the file name and the way the response delivers them, together."""

from __future__ import annotations

from collections.abc import Sequence

from clickguard.inspection.payloads.disposition import TOKEN, filename_from
from clickguard.inspection.payloads.file_names import bot_binary_name, dangerous_extension, extension
from clickguard.inspection.payloads.results import DriveBy, Payload
from clickguard.inspection.payloads.sniffing import NOTHING_SEEN, Seen, examine

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


# Names that say "page, picture, media, PDF": an executable or archive under such a name is
# disguised. Office names disguise only code (an OLE or OOXML document is a container), and
# plain-text names only binaries (a script is text).
_DOCUMENT_NAMES = frozenset({
    "avi", "bmp", "css", "gif", "htm", "html", "ico", "jpeg", "jpg", "json", "m4a", "mkv", "mov", "mp3",
    "mp4", "ogg", "pdf", "png", "svg", "tif", "tiff", "wav", "webm", "webp",
})
_OFFICE_NAMES = frozenset({"doc", "docx", "odt", "ods", "ppt", "pptx", "rtf", "xls", "xlsx"})
_TEXT_NAMES = frozenset({"csv", "log", "md", "text", "txt"})


_TEXTUAL = frozenset({"markup", "json", "text"})

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
    return media if slash and TOKEN.fullmatch(kind) and TOKEN.fullmatch(subtype) else None


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
    ext = extension(filename)
    return ext in _DOCUMENT_NAMES or (code and ext in _OFFICE_NAMES) or (not textual and ext in _TEXT_NAMES)


def _name_stands(ext: str | None, bot: bool, seen: Seen, attachment: bool, declared: str | None) -> bool:
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
        what = f"a file named {filename} (.{extension(filename)}: {why})"
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
    seen = examine(head) if head else NOTHING_SEEN
    payload = seen.payload

    level = dangerous_extension(filename) if filename else None
    bot = filename is not None and bot_binary_name(filename)
    risky_name = level is not None or bot
    name_counts = risky_name and _name_stands(extension(filename), bot, seen, attachment, declared)
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
