"""File names judged: Chromium's download danger levels, and the names IoT bots give their binaries."""

from __future__ import annotations

import re
from typing import Literal

type DangerLevel = Literal["dangerous", "user_gesture"]

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


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _basename(filename: str) -> str:
    """The last component of a name, as Windows would save it (no trailing dots or spaces)."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1].strip().rstrip(". ")


def extension(filename: str | None) -> str | None:
    """The last extension of a file name, lower-case, without the dot."""
    if not filename:
        return None
    _, dot, ext = _basename(filename).rpartition(".")
    return ext.lower() if dot and ext else None


def dangerous_extension(filename: str) -> DangerLevel | None:
    """Chromium's danger level for a file name's last extension: "dangerous", "user_gesture" or None."""
    ext = extension(filename)
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
    return base in _BOT_NAMES or extension(base) in _BOT_SUFFIXES


def safe_name(name: str | None) -> str | None:
    """The name a browser would save under: last path component, no control characters."""
    if not name:
        return None
    cleaned = _basename(_CONTROL_CHARACTERS.sub("", name))
    return cleaned or None
