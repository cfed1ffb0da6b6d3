"""A response body as the document a browser sees: whether it is markup, and its text.

`is_markup` tells whether a browser renders the body as HTML, XHTML or SVG (the declared
type, or a sniff of the first bytes when there is none), `is_xml` whether its XML parser
reads it (an XML type: XHTML, SVG, any ``+xml``); `decode_html` picks the encoding as a
browser does (BOM, charset parameter, XML declaration, <meta> prescan, windows-1252) by the
WHATWG Encoding Standard's labels.
"""

from __future__ import annotations

import re

from clickguard.inspection.navigation.markup_scan import ASCII_WS, tag_attributes

# The WHATWG Encoding Standard's labels, by the Python codec that decodes them.
_ENCODING_LABELS = {
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 "
                 "iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 iso-8859-6-e "
                 "iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 iso88597 "
                 "iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 iso88598 "
                 "iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "mac_roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 iso8859-1 iso88591 "
              "iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 l5 "
              "latin5 windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac_cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    # The standard's GBK decoder is its gb18030 decoder.
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 ksc_5601 "
             "windows-949",
    "replacement": "csiso2022kr hz-gb-2312 iso-2022-cn iso-2022-cn-ext iso-2022-kr replacement",
    "utf-16-be": "unicodefffe utf-16be",
    "utf-16-le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
    "x-user-defined": "x-user-defined",
}
_CODEC_BY_LABEL = {label: codec for codec, labels in _ENCODING_LABELS.items() for label in labels.split()}
_X_USER_DEFINED = {byte: 0xF700 + byte for byte in range(0x80, 0x100)}
_CHARSET_PARAM = re.compile(
    r";[\t\n\f\r ]*charset[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"?|([^;\t\n\f\r ]*))", re.I
)
# Possessive: each alternative starts with a character no other can, so nothing is lost by
# never backtracking, and a "<" with no ">" after it costs one pass instead of many.
_PRESCAN = re.compile(
    rb"<!--.*?-->"
    rb"|<meta(?=[\t\n\f\r /])(?P<meta>(?:[^>\"']|\"[^\"]*+\"|'[^']*+')*+)>"
    rb"|<[!/?][^>]*+>"
    rb"|<[A-Za-z](?:[^>\"']|\"[^\"]*+\"|'[^']*+')*+>",
    re.I | re.S,
)
_META_CHARSET = re.compile(
    r"charset[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"|'([^']*)'|([^\t\n\f\r ;\"']+))", re.I
)
_XML_DECLARATION = re.compile(rb"<\?xml[^>]*?encoding[\t\n\r ]*=[\t\n\r ]*[\"']([A-Za-z0-9._:-]+)[\"']")
_UNKNOWN_TYPES = frozenset({"", "unknown/unknown", "application/unknown", "*/*"})


def decode_html(body: bytes, content_type: str | None) -> str:
    """Body bytes as text, in the encoding a browser would pick (BOM, charset, <meta>, windows-1252)."""
    if body[:3] == b"\xef\xbb\xbf":
        return body[3:].decode("utf-8", "replace")
    if body[:2] == b"\xfe\xff":
        return body[2:].decode("utf-16-be", "replace")
    if body[:2] == b"\xff\xfe":
        return body[2:].decode("utf-16-le", "replace")
    codec = _charset_codec(content_type) if content_type else None
    if codec is None:
        codec = _xml_codec(body) if is_xml(content_type, body) else _prescan_codec(body[:1024]) or "cp1252"
    return _decode(body, codec)


def _xml_codec(body: bytes) -> str:
    """The codec of an XML document without BOM or charset: UTF-16 by its "<?", its declaration, UTF-8."""
    if body[:4] == b"<\0?\0":
        return "utf-16-le"
    if body[:4] == b"\0<\0?":
        return "utf-16-be"
    declared = _XML_DECLARATION.match(body, 0, 1024)
    codec = _CODEC_BY_LABEL.get(declared.group(1).decode("ascii").lower()) if declared else None
    if codec is None or codec == "replacement":
        return "utf-8"
    return "utf-8" if codec.startswith("utf-16") else codec  # a declaration readable as ASCII is no UTF-16


def is_xml(content_type: str | None, body: bytes) -> bool:
    """Whether a browser reads body with its XML parser: an XML type, or an untyped body starting "<?xml"."""
    mime = _mime(content_type)
    if mime in ("text/xml", "application/xml") or mime.endswith("+xml"):
        return True
    return mime in _UNKNOWN_TYPES and body[:5].lower() == b"<?xml"


def _mime(content_type: str | None) -> str:
    """The lower-case essence of a Content-Type ("text/html"), "" when there is none."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip(ASCII_WS).lower()


def _charset_codec(content_type: str) -> str | None:
    """The codec for the charset parameter of a Content-Type, when it names a known encoding."""
    match = _CHARSET_PARAM.search(content_type)
    if match is None:
        return None
    label = match.group(1) if match.group(1) is not None else match.group(2)
    return _CODEC_BY_LABEL.get(label.strip(ASCII_WS).lower())


def _prescan_codec(head: bytes) -> str | None:
    """The codec a <meta charset> or <meta http-equiv=content-type> in the first bytes names."""
    if b"<" not in head:
        return None
    for match in _PRESCAN.finditer(head):
        meta = match.group("meta")
        if meta is None:
            continue
        attrs = tag_attributes(meta.decode("latin-1"), True)
        label = attrs.get("charset")
        if label is None:
            if attrs.get("http-equiv", "").strip(ASCII_WS).lower() != "content-type":
                continue
            found = _META_CHARSET.search(attrs.get("content", ""))
            if found is None:
                continue
            label = next(group for group in found.groups() if group is not None)
        codec = _CODEC_BY_LABEL.get(label.strip(ASCII_WS).lower())
        if codec is None:
            continue
        if codec.startswith("utf-16"):
            return "utf-8"  # a document that can declare itself in ASCII is not UTF-16
        return "cp1252" if codec == "x-user-defined" else codec
    return None


def _decode(body: bytes, codec: str) -> str:
    """body decoded with codec; bytes that do not decode become U+FFFD."""
    if codec == "replacement":
        return "\ufffd" if body else ""
    if codec == "x-user-defined":
        return body.decode("latin-1").translate(_X_USER_DEFINED)
    return body.decode(codec, "replace")


_HTML_SNIFF = re.compile(
    rb"[\t\n\f\r ]*(?:<!doctype html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style|<title"
    rb"|<b|<body|<br|<p|<!--)[\t\n\f\r >]",
    re.I,
)


def is_markup(content_type: str | None, body: bytes) -> bool:
    """Whether a browser would render body as HTML, XHTML or SVG.

    Every XML document counts: XHTML, SVG and MathML elements run and navigate wherever
    they are in one (the XML reader reports only those), however late they appear.
    """
    mime = _mime(content_type)
    if mime == "text/html" or is_xml(content_type, body):
        return True
    if mime in _UNKNOWN_TYPES:
        return _HTML_SNIFF.match(body) is not None
    return False
