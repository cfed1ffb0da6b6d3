"""Scripts in text: the shell droppers IoT bots fetch and run, and PowerShell download cradles."""

from __future__ import annotations

import re

from clickguard.inspection.payloads.magic_bytes import looks_binary
from clickguard.inspection.payloads.results import SNIFF_BYTES, Payload

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


def as_text(head: bytes) -> bytes | None:
    """The first SNIFF_BYTES of head as UTF-8 text, or None when they are not text."""
    sample = head[:SNIFF_BYTES]
    if sample[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 (PowerShell's own default)
        codec = "utf-16-le" if sample[:2] == b"\xff\xfe" else "utf-16-be"
        sample = sample[2 : len(sample) & ~1].decode(codec, "replace").encode("utf-8", "replace")
    elif sample[:3] == b"\xef\xbb\xbf":
        sample = sample[3:]
    # A NUL anywhere, or any other control byte in the first KiB, makes it binary.
    if not sample or sample.find(0) >= 0 or looks_binary(sample[:1024]):
        return None
    return sample


def markup_or_json(text: bytes) -> str | None:
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


def script_payload(text: bytes) -> Payload | None:
    """The shell script (dropper or not) or PowerShell download cradle that text is; None for other text."""
    return _shell(text) or _powershell(text)
