"""`clickguard rewrite --jobs`: a pool writes what one process writes; QP bodies re-encoded by the line."""

from __future__ import annotations

import base64
import binascii
import email.policy
import html
import mailbox
import quopri
import random
import re
import subprocess
import sys
import time
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from clickguard.mail.links import decode
from clickguard.mail.rewrite import RewriteSettings, _encode_body, _reencode_qp, rewrite_message

KEY = bytes(range(32))
CLICK_HOST = "click.corp.example"
SETTINGS = RewriteSettings(click_host=CLICK_HOST, key=KEY)
CLICK_LINK = re.compile(rf"https://{re.escape(CLICK_HOST)}/v1/[^\s\"'<>]+")


# --- a mixed batch ------------------------------------------------------------------------------

def _qp_split_link(n: int, eol: bytes) -> bytes:
    """Hand-written QP html whose link is cut by a soft line break (and an escape on the cut)."""
    body = (b"<p>Hello,</p>" + eol
            + b'<p><a href=3D"https://parcel.example/track?id=3D' + str(n).encode() + b"&amp;l=" + eol
            + b'ang=3Den">Track</a> or <a href=3D"https://parcel.exam=' + eol
            + b'ple/help">help</a></p>' + eol
            + b"<p>Unchanged line, kept byte for byte =E2=80=94 caf=C3=A9.</p>" + eol)
    headers = (b"From: shop@parcel.example", b"To: bob@corp.example", f"Message-ID: <q{n}@x>".encode(),
               b"MIME-Version: 1.0", b"Content-Type: text/html; charset=utf-8",
               b"Content-Transfer-Encoding: quoted-printable")
    return eol.join(headers) + eol + eol + body


def _newsletter(n: int, linesep: str) -> bytes:
    """An HTML newsletter as the email package writes it: text and QP html alternatives."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "news@shop.example", "alice@corp.example", "Offers"
    msg["Message-ID"] = f"<{n}@shop.example>"
    links = "".join(f'<p>Item {i}: <a href="https://shop.example/p/{n}/{i}?ref=mail">see it</a> '
                    + "lorem ipsum dolor sit amet " * 5 + "</p>\n" for i in range(4))
    msg.set_content("Plain version: https://shop.example/\n" + "text " * 40)
    msg.add_alternative(f"<html><body>{links}<p>caf\u00e9</p></body></html>", subtype="html",
                        cte="quoted-printable")
    return msg.as_bytes(policy=email.policy.default.clone(linesep=linesep))


def _base64_html(n: int) -> bytes:
    """A base64 html part in a multipart message, CRLF line breaks."""
    html = f'<a href="http://b64.example/{n}">x</a> and <a href="mailto:a@b.example">mail</a>'.encode()
    return (b"From: a@b.example\r\nTo: c@corp.example\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
            b"--zz\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(html).replace(b"\n", b"\r\n") + b"--zz--\r\n")


def _eight_bit(n: int) -> bytes:
    """An 8-bit UTF-8 plain text body with a link."""
    return ("From: a@b.example\nTo: c@corp.example\nContent-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: 8bit\n\nCaf\u00e9 cr\u00e8me: https://menu.example/{n}, enjoy.\n"
            ).encode()


MALFORMED = [
    b"\x00\xff\xfe this is not a message at all\n",
    b"From: a@b.example\nContent-Type: text/plain; charset=undefined\n\nhttp://x.example/\n",
    b"From: a@b.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nhttp://x.example/ no close\n",
    b"From: a@b.example\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n!!not base64!!\n",
]


def _batch() -> list[bytes]:
    """About forty messages of every shape, bad ones among good ones."""
    messages: list[bytes] = []
    for n in range(8):
        eol = "\r\n" if n % 2 else "\n"
        messages += [_qp_split_link(n, eol.encode()), _newsletter(n, eol), _base64_html(n), _eight_bit(n)]
        if n < len(MALFORMED):
            messages.append(MALFORMED[n])
    messages.append(b"From: a@b.example\n\nNo link here.\n")
    return messages


def _same_minute() -> None:
    """Wait for a fresh minute when this one is nearly over: click links carry the minute they were made."""
    left = 60 - time.time() % 60
    if left < 25:
        time.sleep(left + 0.5)


def _run(tmp_path: Path, source: Path, output: Path, jobs: int) -> tuple[int, bytes]:
    """`clickguard rewrite` with --jobs; (exit status, stderr)."""
    done = subprocess.run([sys.executable, "-m", "clickguard.cli", "rewrite", str(source), "-o", str(output),
                           "--jobs", str(jobs), "--certs", str(tmp_path / "certs")],
                          cwd=tmp_path, capture_output=True, timeout=120, check=False)
    return done.returncode, done.stderr


def test_directory_jobs_2_writes_what_jobs_1_writes(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    messages = _batch()
    for n, raw in enumerate(messages):
        (source / f"{n:03d}.eml").write_bytes(raw)
    (source / "999-a-directory").mkdir()  # not a message: nothing written for it, in both
    (source / "020-unreadable.eml").symlink_to("/proc/self/mem")  # reads fail (EIO): skipped, in both
    _same_minute()
    one = _run(tmp_path, source, tmp_path / "one", 1)
    two = _run(tmp_path, source, tmp_path / "two", 2)
    assert one[0] == two[0] == 1, one[1]
    assert one[1] == two[1]  # the same notes, in the same order, and the same summary
    assert b"passed through unchanged" in one[1] and b"020-unreadable.eml: skipped" in one[1]
    assert f"{len(messages) + 1} messages".encode() in one[1]
    written_one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    written_two = {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()}
    assert len(written_one) == len(messages)
    assert written_one == written_two
    assert sum(b"https://clickguard.local/v1/" in raw for raw in written_one.values()) >= 16


def test_mbox_jobs_2_writes_what_jobs_1_writes(tmp_path: Path) -> None:
    messages = _batch()
    envelope = b"From someone@example Thu Jan  1 00:00:00 2026\n"
    # CRLF messages inside an mbox are kept as they are, like the others.
    (tmp_path / "in.mbox").write_bytes(b"".join(envelope + raw + b"\n" for raw in messages))
    _same_minute()
    one = _run(tmp_path, tmp_path / "in.mbox", tmp_path / "one.mbox", 1)
    two = _run(tmp_path, tmp_path / "in.mbox", tmp_path / "two.mbox", 2)
    assert one[0] == two[0] == 1, one[1]
    assert one[1] == two[1]
    assert (tmp_path / "one.mbox").read_bytes() == (tmp_path / "two.mbox").read_bytes()
    box = mailbox.mbox(tmp_path / "two.mbox", create=False)
    assert len(box) == len(messages)


def test_jobs_must_be_a_count(tmp_path: Path) -> None:
    (tmp_path / "in.eml").write_bytes(_eight_bit(1))
    for bad in ("0", "x", "-1", "65"):
        status, stderr = _run(tmp_path, tmp_path / "in.eml", tmp_path / "out.eml", bad)  # type: ignore[arg-type]
        assert status == 2 and b"--jobs" in stderr, stderr


# --- quoted-printable: only the changed lines re-encoded -----------------------------------------

def _text_part_body(raw: bytes) -> bytes:
    """The raw (encoded) body of the message's text/html part."""
    parsed = BytesParser(policy=email.policy.compat32).parsebytes(raw)
    for part in parsed.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload()
            assert isinstance(payload, str)
            return payload.encode("ascii")
    raise AssertionError("no html part")


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_links_split_over_soft_breaks_are_rewritten_and_other_lines_kept(eol: bytes) -> None:
    raw = _qp_split_link(7, eol)
    result = rewrite_message(raw, SETTINGS, origin_ip="203.0.113.9")
    assert (result.error, result.links) == (None, 2)
    old_body, new_body = raw.split(eol + eol, 1)[1], result.data.split(eol + eol, 1)[1]
    new_text = binascii.a2b_qp(new_body).decode()
    links = CLICK_LINK.findall(new_text)
    targets = [decode(html.unescape(link), KEY, CLICK_HOST).target for link in links]
    assert targets == ["https://parcel.example/track?id=7&lang=en", "https://parcel.example/help"]
    # Decoded, it is the text of the input with each link replaced, and nothing else changed.
    old_text = binascii.a2b_qp(old_body).decode()
    assert (new_text.replace(links[0], "https://parcel.example/track?id=7&amp;lang=en")
            .replace(links[1], "https://parcel.example/help")) == old_text
    # The lines without links keep their bytes, line breaks included; the new ones fit in 76.
    physical = old_body.split(eol)
    assert len(physical) == 6 and physical[5] == b""
    assert new_body.startswith(physical[0] + eol) and new_body.endswith(eol + physical[4] + eol)
    assert all(len(line) <= 76 for line in new_body.split(eol))
    assert new_body.count(eol) > old_body.count(eol)  # the long click links are cut by soft breaks


def _random_lines(rng: random.Random) -> list[bytes]:
    """Lines of text a QP encoder must escape: '=', trailing blanks, 8-bit bytes, tabs, long lines, CR."""
    alphabet = [b"a", b"b", b" ", b"\t", b"=", b".", b"\xc3\xa9", b"\x00", b"\r", b"http://x.example/?q=1",
                b"F"]
    lines = []
    for _ in range(rng.randint(1, 30)):
        lines.append(b"".join(rng.choice(alphabet) for _ in range(rng.choice((0, 3, 40, 90, 200)))))
    return lines


def _edited(lines: list[bytes], rng: random.Random) -> list[bytes]:
    """Some lines changed (a link made longer), the others as they were."""
    return [line + b" https://click.example/v1/" + bytes(rng.choice(b"ABC=") for _ in range(60))
            if rng.random() < 0.3 else line for line in lines]


@pytest.mark.parametrize("seed", range(300))
def test_partial_reencoding_is_the_full_encoding_of_a_canonical_body(seed: int) -> None:
    # A body our own encoder wrote: re-encoding only the changed lines gives exactly the
    # bytes re-encoding everything gives, whatever the line breaks and the final one.
    rng = random.Random(seed)
    eol = rng.choice((b"\n", b"\r\n"))
    body = _encode_body(eol.join(_random_lines(rng)) + rng.choice((b"", eol)), "quoted-printable", eol)
    data = binascii.a2b_qp(body)
    # Canonical: encoding its text gives it back (a "\r\r\n" in the text is encoded otherwise).
    while _encode_body(data, "quoted-printable", eol) != body:
        body = _encode_body(data, "quoted-printable", eol)
        data = binascii.a2b_qp(body)
    new_data = eol.join(_edited(data.split(eol), rng))
    partial = _reencode_qp(body, data, new_data, eol)
    assert partial == _encode_body(new_data, "quoted-printable", eol)
    assert binascii.a2b_qp(partial) == binascii.a2b_qp(_encode_body(new_data, "quoted-printable", eol))


@pytest.mark.parametrize("seed", range(200))
def test_partial_reencoding_of_a_foreign_body_decodes_the_same_and_keeps_unchanged_lines(seed: int) -> None:
    # Bodies other encoders wrote (quopri: other choices of what to escape, soft breaks at other
    # places): the decoded text is the full re-encoding's, and unchanged lines keep their bytes.
    rng = random.Random(seed)
    old_lines = [line.replace(b"\r", b"") for line in _random_lines(rng)]
    body = b"".join(quopri.encodestring(line + b"\n", quotetabs=rng.random() < 0.5) for line in old_lines)
    data = binascii.a2b_qp(body)
    new_data = b"\n".join(_edited(data.split(b"\n"), rng))
    partial = _reencode_qp(body, data, new_data, b"\n")
    assert binascii.a2b_qp(partial) == new_data
    assert binascii.a2b_qp(partial) == binascii.a2b_qp(_encode_body(new_data, "quoted-printable", b"\n"))
    # Longer lines only where binascii's encoder writes them too (it can end a line in 77).
    full_lines = set(_encode_body(new_data, "quoted-printable", b"\n").split(b"\n"))
    assert all(len(line) <= 76 or line in full_lines for line in partial.split(b"\n"))
    # Each line of the body (its physical lines up to a hard break), kept when unchanged and short.
    encoded_lines = re.findall(rb"(?:[^\n]*=\n)*[^\n]*\n", body)
    pairs = zip(data.split(b"\n"), new_data.split(b"\n"), strict=True)
    kept = b"".join(encoded for encoded, (old, new) in zip(encoded_lines, pairs, strict=False) if old == new)
    if max(map(len, body.split(b"\n"))) > 76:
        kept = b""  # a body over the limit is re-encoded whole
    assert _subsequence(kept, partial)


def _subsequence(kept: bytes, whole: bytes) -> bool:
    """Whether the lines of kept appear in whole in the same order."""
    lines = iter(whole.split(b"\n"))
    return all(any(line == other for other in lines) for line in kept.split(b"\n")[:-1])


def test_a_line_more_or_less_reencodes_the_whole_body() -> None:
    body = _encode_body(b"one http://a.example/\ntwo\n", "quoted-printable", b"\n")
    data = binascii.a2b_qp(body)
    new_data = b"one http://a.example/ two\n"  # a link that spanned a line break, now one line
    assert _reencode_qp(body, data, new_data, b"\n") == _encode_body(new_data, "quoted-printable", b"\n")


def test_a_body_over_76_characters_is_reencoded_whole() -> None:
    # The email package writes QP lines of 78 characters: the rewritten body keeps to 76.
    raw = _newsletter(1, "\n")
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert result.links == 5
    assert max(map(len, _text_part_body(raw).split(b"\n"))) > 76
    assert max(map(len, _text_part_body(result.data).split(b"\n"))) <= 76
