"""Block, warn and message pages: IT's templates, branding and the languages the pages speak.

Policy key ``pages`` (every key optional; none given: the shipped pages, unbranded)::

    templates: FOLDER      # files here replace the shipped ones of the same name (clickguard/web/templates)
    organisation: TEXT     # shown at the top of every page
    help_desk: {email: ADDRESS, phone: NUMBER, url: http(s)://…}   # links: mailto:, tel:, http(s): only
    logo: FILE             # PNG, JPEG, GIF or WebP by its bytes, at most 64 KiB, embedded as a data: URI
    default_language: en   # when the browser asks for none of en, de, fr, es

Everything is read and checked when the policy loads, so a mistake is a policy problem
(``file:line: pages.templates: block.html:7: …``) and the last good policy keeps serving.
Templates are Jinja2 in a sandbox, autoescape on and StrictUndefined: each is rendered once
per language with sample values at load, so a misspelt name fails there, not on a user's
page. The values a template gets are `PageValues` and the common ones listed in base.html.

An SVG logo is refused: SVG can carry script, and although an ``<img>`` never runs it, an
IT template that put the logo elsewhere could. The strings of each language are
clickguard/web/locales/<lang>.json (page strings, the proxy's messages keyed by their English
text, reason texts); English reason texts are reasons.py's own.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, Self
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import PrivateAttr, StrictStr, ValidationInfo, field_validator, model_validator

from clickguard import reasons
from clickguard.policy.sections import _dns_name, _Model, _resolve_path
from clickguard.policy.yamlfile import FieldProblems, describe

type Language = Literal["en", "de", "fr", "es"]
LANGUAGES: tuple[Language, ...] = ("en", "de", "fr", "es")
LOGO_MAX = 64 * 1024  # the logo goes into every page, base64: a third bigger again
_IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAILBOX = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]{2,30}")


def web_folder(*parts: str) -> Path:
    """A folder shipped inside the package (under clickguard/web)."""
    root = files("clickguard").joinpath("web", *parts)
    if not isinstance(root, Path):
        raise RuntimeError(f"clickguard's page templates are not on the file system: {root}")
    return root


class Contact(NamedTuple):
    """One way to reach the help desk, as a page links it."""

    kind: Literal["email", "phone", "web"]
    label: str  # as IT wrote it
    href: str  # mailto:, tel: or http(s): only


class Shown(NamedTuple):
    """A finding as a page shows it: its code, the plain sentence in the page's language, the evidence."""

    code: str
    text: str
    detail: str


class PageValues(NamedTuple):
    """What a page template gets besides the common values (lang, t, org, logo, help)."""

    ref: str
    url: str = ""
    findings: tuple[Shown, ...] = ()
    continue_url: str | None = None
    heading: str = ""
    message: str = ""


class Catalog(NamedTuple):
    """The strings of one language; what a shipped catalog lacks comes from English."""

    language: str
    page: Mapping[str, str]  # the templates' `t`
    messages: Mapping[str, str]  # the proxy's own messages, keyed by their English text
    reasons: Mapping[str, str]  # reason code -> sentence; "landing.*" ({name}) and "*" ({code})

    def reason(self, code: str) -> str:
        """The plain sentence for a reason code in this language."""
        if code in self.reasons:
            return self.reasons[code]
        prefix, _, name = code.partition(".")
        if code in reasons.REASONS or not self.reasons:
            return reasons.text(code)  # English: one table, in reasons.py
        if prefix == "landing" and "landing.*" in self.reasons:
            return self.reasons["landing.*"].replace("{name}", name)
        return self.reasons.get("*", "{code}").replace("{code}", code)

    def message(self, text: str) -> str:
        """One of the proxy's messages in this language; one not translated stays English."""
        return self.messages.get(text, text)


def read_catalog(path: Path) -> dict[str, dict[str, str]]:
    """A catalog file: sections page, messages and reasons, each a mapping of text to text."""
    data = json.loads(path.read_text(encoding="utf-8"))
    sections = ("page", "messages", "reasons")
    if not isinstance(data, dict) or set(data) != set(sections) or not all(
            isinstance(data[s], dict) and all(isinstance(v, str) for v in data[s].values())
            for s in sections):
        raise ValueError(f"{path}: a catalog is an object of page, messages and reasons, each of strings")
    return data


@functools.cache
def catalogs() -> Mapping[str, Catalog]:
    """The shipped catalogs by language, each completed from English (read once per process)."""
    folder = web_folder("locales")
    english = read_catalog(folder / "en.json")
    out: dict[str, Catalog] = {}
    for language in LANGUAGES:
        own = english if language == "en" else read_catalog(folder / f"{language}.json")
        out[language] = Catalog(language, {**english["page"], **own["page"]},
                                {**english["messages"], **own["messages"]}, own["reasons"])
    return out


class TemplateProblem(ValueError):
    """A template that does not compile or render: its file and line, and Jinja's message."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line = file, line
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


def _template_line(tb: TracebackType | None) -> tuple[str, int] | None:
    """The innermost template file and line of an error raised while rendering."""
    found = None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.endswith(".py") and not name.startswith("<"):
            found = (name, tb.tb_lineno)
        tb = tb.tb_next
    return found


class PageSet:
    """The page templates (IT's over the shipped), the catalogs and the branding: renders a page."""

    def __init__(self, folder: Path | None, organisation: str | None, help_desk: tuple[Contact, ...],
                 logo: str | None, default_language: Language) -> None:
        shipped = web_folder("templates")
        self.folder = folder
        self.branding = {"org": organisation, "help": help_desk, "logo": logo}
        self.default_language: Language = default_language
        self.catalogs = catalogs()
        # The sandbox keeps a template to its values; auto_reload off: a template changes with a reload.
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader([*([folder] if folder else []), shipped]),
            autoescape=True, undefined=jinja2.StrictUndefined, auto_reload=False,
            trim_blocks=True, lstrip_blocks=True)

    def catalog(self, language: str) -> Catalog:
        """The strings of a language (the default language's for one not shipped)."""
        return self.catalogs.get(language) or self.catalogs[self.default_language]

    def render(self, template: str, language: str, values: PageValues) -> str:
        """A page as HTML; TemplateProblem (file:line) when the template fails."""
        catalog = self.catalog(language)
        try:
            return self.env.get_template(template).render(
                lang=catalog.language, t=catalog.page, **self.branding, **values._asdict())
        except jinja2.TemplateSyntaxError as e:
            raise TemplateProblem(e.filename or e.name or template, e.lineno, e.message or str(e)) from None
        except jinja2.TemplateNotFound as e:
            where = _template_line(e.__traceback__) or (template, None)
            raise TemplateProblem(where[0], where[1], f"no template named {e.name!r}") from None
        except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as e:
            # What an expression in IT's template can raise ({{ 1/0 }}, {{ "a" + 1 }}), not a crash.
            where = _template_line(e.__traceback__) or (template, None)
            raise TemplateProblem(where[0], where[1], str(e)) from None

    def check(self) -> None:
        """Render every page in every language with sample values; TemplateProblem at the first failure."""
        for language in LANGUAGES:
            catalog = self.catalogs[language]
            findings = tuple(Shown(code, catalog.reason(code), "sample evidence <&>")
                             for code in (reasons.LANDING_THINGBOT, "landing.sample"))
            base = PageValues("000000000000", "http://203.0.113.9/<sample>?a=1&b=2", findings)
            for template, values in (
                    ("block.html", base), ("warn.html", base),
                    ("warn.html", base._replace(continue_url="http://clickguard.local/continue?t=x")),
                    ("unrecorded.html", base),
                    ("message.html", base._replace(heading="Sample title", message="Sample message"))):
                self.render(template, language, values)

    def watched_files(self) -> list[Path]:
        """IT's template folder and its files, so editing a template reloads the policy."""
        if self.folder is None:
            return []
        return [self.folder, *sorted(p for p in self.folder.rglob("*") if p.is_file())]


@functools.cache
def shipped_pages() -> PageSet:
    """The shipped pages, unbranded, in English by default (built on first use)."""
    return PageSet(None, None, (), None, "en")


def _plain_text(value: str, what: str, longest: int) -> str:
    """One line of text IT wrote: stripped, not empty, no control characters, bounded."""
    text = value.strip()
    if not text or len(text) > longest or _CONTROL.search(text):
        raise ValueError(f"{what} must be one line of 1 to {longest} characters (got {describe(value)})")
    return text


def _email(value: str) -> str:
    """A help-desk e-mail address: a plain mailbox at a DNS name."""
    mailbox, at, domain = value.strip().rpartition("@")
    if not at or not _MAILBOX.fullmatch(mailbox) or ".." in mailbox:
        raise ValueError(f"must be an e-mail address such as it-help@example.com (got {describe(value)})")
    return f"{mailbox}@{_dns_name(domain)}"


def _phone(value: str) -> str:
    """A help-desk phone number: digits, an optional leading +, spaces, ( ) . / -."""
    text = value.strip()
    if not _PHONE.fullmatch(text):
        raise ValueError(f"must be a phone number such as +49 30 1234 567 (got {describe(value)})")
    return text


def _web_url(value: str) -> str:
    """A help-desk page: an http(s) URL with a host and no user name or password."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        ok = (parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc
              and not re.search(r"\s", text) and not _CONTROL.search(text))
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"must be an http:// or https:// URL (got {describe(value)})")
    return text


class HelpDesk(_Model):
    """How users reach IT from a page; each contact becomes a link (mailto:, tel:, http(s):)."""

    email: StrictStr | None = None
    phone: StrictStr | None = None
    url: StrictStr | None = None

    @field_validator("email")
    @classmethod
    def _mailbox(cls, value: str | None) -> str | None:
        """A plain mailbox at a DNS name."""
        return None if value is None else _email(value)

    @field_validator("phone")
    @classmethod
    def _number(cls, value: str | None) -> str | None:
        """Digits with the usual separators."""
        return None if value is None else _phone(value)

    @field_validator("url")
    @classmethod
    def _page(cls, value: str | None) -> str | None:
        """An http(s) page."""
        return None if value is None else _web_url(value)

    def contacts(self) -> tuple[Contact, ...]:
        """The contacts given, as links."""
        out = []
        if self.email:
            out.append(Contact("email", self.email, f"mailto:{self.email}"))
        if self.phone:
            out.append(Contact("phone", self.phone, "tel:" + re.sub(r"[^0-9+]", "", self.phone)))
        if self.url:
            out.append(Contact("web", self.url, self.url))
        return tuple(out)


def image_type(data: bytes) -> str:
    """The MIME type of a logo by its first bytes; ValueError for anything but PNG, JPEG, GIF, WebP."""
    for magic, mime in _IMAGE_TYPES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"<svg" in data[:4096].lower():
        raise ValueError("SVG is refused (it can carry script): give the logo as PNG, JPEG, GIF or WebP")
    raise ValueError("not a PNG, JPEG, GIF or WebP image (judged by its first bytes, not its name)")


def logo_uri(path: Path) -> str:
    """A logo file as a data: URI; ValueError when it cannot be read, is too big or not an image."""
    try:
        with path.open("rb") as f:
            data = f.read(LOGO_MAX + 1)
    except OSError as e:
        raise ValueError(f"cannot read the logo {path}: {e.strerror or e}") from None
    if len(data) > LOGO_MAX:
        raise ValueError(f"the logo {path} is bigger than {LOGO_MAX // 1024} KiB (it goes into every page)")
    return f"data:{image_type(data)};base64,{base64.b64encode(data).decode('ascii')}"


class PagesConfig(_Model):
    """The block, warn and message pages: IT's templates, branding, the default language."""

    templates: Path | None = None  # a folder; absolute after validation
    organisation: StrictStr | None = None
    help_desk: HelpDesk = HelpDesk()
    logo: Path | None = None  # absolute after validation; read at load
    default_language: Language = "en"

    _pages: PageSet | None = PrivateAttr(default=None)

    @field_validator("templates", "logo", mode="before")
    @classmethod
    def _absolute(cls, value: object, info: ValidationInfo) -> Path | None:
        """Relative paths resolve against the policy file's directory."""
        return _resolve_path(value, info)

    @field_validator("organisation")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        """The organisation's name: one line of plain text (it is escaped on the page anyway)."""
        return None if value is None else _plain_text(value, "the organisation's name", 120)

    @model_validator(mode="after")
    def _build(self) -> Self:
        """Read the logo, load IT's templates and render each once; problems at their keys."""
        if not (self.templates or self.organisation or self.help_desk.contacts() or self.logo
                or self.default_language != "en"):
            return self  # the shipped pages: shipped_pages(), built on first use
        logo = None
        if self.logo is not None:
            try:
                logo = logo_uri(self.logo)
            except ValueError as e:
                raise FieldProblems([(("logo",), str(e))]) from None
        if self.templates is not None and not self.templates.is_dir():
            raise FieldProblems([(("templates",), f"not a folder: {self.templates}")])
        pages = PageSet(self.templates, self.organisation, self.help_desk.contacts(), logo,
                        self.default_language)
        try:
            pages.check()
        except TemplateProblem as e:
            raise FieldProblems([(("templates",), f"template error: {e}")]) from None
        self._pages = pages
        return self

    def watched(self) -> list[Path]:
        """The files a change of which reloads the policy: the logo, IT's template folder and its files."""
        return [*([self.logo] if self.logo else []), *self.pages.watched_files()]

    @property
    def pages(self) -> PageSet:
        """What renders the pages this section describes."""
        return self._pages or shipped_pages()
