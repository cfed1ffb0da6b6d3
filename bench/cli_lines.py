"""The command-line lines of `make bench`: `clickguard check -` and `clickguard rewrite` as subprocesses.

Start-up (imports, policy, the ~1M feed entries for check) is excluded by difference:
a run over a large input and a run over a few items of the same kind, alternately,
`rounds` times each; rate = (large - few) items / (median large time - median few time).
Wall-clock time, so `--jobs 2` counts for what both cores give; CPU per item is the
same difference over the children's user+system time (RUSAGE_CHILDREN).
"""

from __future__ import annotations

import functools
import mailbox
import random
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple

from bench.measure import BIN, FEEDS, has_option, verdict

CHECK_GOAL = 150_000  # URLs/s
REWRITE_GOAL = 2_000  # messages/s
FEW = 100  # items in the run that measures start-up


class Timed(NamedTuple):
    """One run of the command: wall seconds and CPU seconds (its process tree's)."""

    wall: float
    cpu: float


def timed(args: list[str], stdin: Path | None = None, before: Callable[[], None] | None = None) -> Timed:
    """Run a command to its end, output discarded; exit status 0 required (stderr shown otherwise)."""
    if before:
        before()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(stdin or "/dev/null", "rb") as source:
        done = subprocess.run(args, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr.decode()[-3000:]}")
    return Timed(wall, after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)


class Rate(NamedTuple):
    """Items per second with start-up excluded, and what it came from."""

    rate: float
    cpu_us: float  # CPU microseconds per item
    large: float  # median seconds of the large run
    few: float  # median seconds of the small run (start-up, mostly)


def by_difference(large: Callable[[], Timed], few: Callable[[], Timed], items: int, rounds: int) -> Rate:
    """Runs alternately, after one warm-up of each: the rate the difference gives."""
    few(), large()
    larges, fews = [], []
    for _ in range(rounds):
        fews.append(few())
        larges.append(large())
    wall_l, wall_f = statistics.median(t.wall for t in larges), statistics.median(t.wall for t in fews)
    cpu_l, cpu_f = statistics.median(t.cpu for t in larges), statistics.median(t.cpu for t in fews)
    return Rate((items - FEW) / max(wall_l - wall_f, 1e-9), 1e6 * (cpu_l - cpu_f) / (items - FEW),
                wall_l, wall_f)


def jobs(command: str) -> tuple[list[str], str]:
    """`--jobs 2` when the command has it (both cores), with how the line says so."""
    if has_option(command, "--jobs"):
        return ["--jobs", "2"], "--jobs 2"
    return [], "one process (no --jobs flag)"


def check_urls(count: int) -> list[str]:
    """A mix of URLs: listed ones from the feeds, ordinary hosts, bare addresses with ports."""
    real = [line.split('","')[2] for line in
            (FEEDS / "urlhaus/urlhaus_csv_online_2026-01-27.csv").read_text().splitlines()
            if line.startswith('"')]
    real += (FEEDS / "openphish/openphish_feed.txt").read_text().split()
    rng = random.Random(7)
    urls: list[str] = []
    while len(urls) < count:
        r = rng.random()
        if r < 0.3:
            urls.append(rng.choice(real))
        elif r < 0.6:
            urls.append(f"https://www.site{rng.randrange(100000)}.example.com/a/b?q={rng.random()}")
        elif r < 0.8:
            urls.append(f"http://{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}."
                        f"{rng.randrange(256)}:{rng.randrange(1024, 65535)}/i")
        else:
            urls.append(f"https://news.example.co.uk/story/{rng.randrange(10**6)}.html")
    return urls


def bench_check(specs: list[str], workdir: Path, count: int, rounds: int, entries: str) -> None:
    """`clickguard check -` over `count` URLs from stdin, the proxy's feeds loaded, start-up excluded."""
    home = workdir / "check"
    home.mkdir()
    urls = check_urls(count)
    (home / "many.txt").write_text("\n".join(urls) + "\n")
    (home / "few.txt").write_text("\n".join(urls[:FEW]) + "\n")
    extra, how = jobs("check")
    args = [str(BIN / "clickguard"), "check", "-", "--state-dir", str(home / "var"), *extra]
    for spec in specs:
        args += ["--feed", spec]
    got = by_difference(lambda: timed(args, home / "many.txt"), lambda: timed(args, home / "few.txt"),
                        count, rounds)
    print(f"clickguard check -: {got.rate:,.0f} URLs/s (goal >= {CHECK_GOAL:,}): {count:,} URLs in "
          f"{got.large:.2f} s, {FEW} URLs in {got.few:.2f} s (start-up: {entries} entries loaded), rate = "
          f"{count - FEW:,} / difference; median of {rounds} alternating runs, {how}, stdout to /dev/null; "
          f"CPU {got.cpu_us:.1f} us per URL: {verdict(got.rate >= CHECK_GOAL)}", flush=True)


def newsletter(n: int) -> bytes:
    """Typical HTML mail: 12 KB, 20 distinct links, text and HTML alternatives (as the proxy sees mail)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "news@shop.example", "alice@corp.example", "Offers"
    msg["Message-ID"] = f"<{n}@shop.example>"
    links = "".join(f'<p>Item {i}: <a href="https://shop.example/p/{n}/{i}?ref=mail">see it</a> '
                    + "lorem ipsum dolor sit amet " * 18 + "</p>\n" for i in range(20))
    msg.set_content("Plain version: https://shop.example/\n" + "text " * 200)
    msg.add_alternative(f"<html><body>{links}</body></html>", subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def campaign_mail(n: int, rng: random.Random) -> bytes:
    """One message of a phishing campaign: a short HTML notice with 1 to 3 links."""
    msg = EmailMessage()
    msg["From"], msg["To"] = "it-support@corp-helpdesk.example", f"user{n % 5000}@corp.example"
    msg["Subject"], msg["Message-ID"] = "Your mailbox is almost full", f"<c{n}@corp-helpdesk.example>"
    msg["Received"] = f"from mx{n % 7}.corp-helpdesk.example ([198.51.100.{n % 250 + 1}]) by mx.corp.example"
    links = [f'<a href="https://mailbox-quota{n % 13}.example/login?u={n}&t={rng.random()}">Keep my mail</a>',
             '<a href="https://corp.example/help">IT help</a>', '<a href="https://corp.example/privacy">Privacy</a>']
    body = ("<p>Dear user,</p><p>Your mailbox has reached 98% of its quota. Confirm your account within "
            "24 hours or new mail will be returned to sender.</p>" + "".join(
                f"<p>{link}</p>" for link in links[:rng.randint(1, 3)]))
    msg.set_content("Your mailbox is almost full; see the HTML version.")
    msg.add_alternative(f"<html><body>{body}</body></html>", subtype="html")
    return msg.as_bytes()


def write_mbox(path: Path, messages: list[bytes]) -> None:
    """An mbox of these messages."""
    box = mailbox.mbox(path)
    box.lock()
    for raw in messages:
        box.add(raw)
    box.flush()
    box.close()


def bench_rewrite(workdir: Path, count: int, rounds: int) -> None:
    """`clickguard rewrite` on a directory of .eml files and on an mbox, start-up excluded."""
    home = workdir / "rewrite"
    for name in ("eml", "eml-few", "out"):
        (home / name).mkdir(parents=True)
    sizes = 0
    for n in range(count):
        raw = newsletter(n)
        sizes += len(raw)
        (home / "eml" / f"{n:06d}.eml").write_bytes(raw)
        if n < FEW:
            (home / "eml-few" / f"{n:06d}.eml").write_bytes(raw)
    rng = random.Random(3)
    campaign = [campaign_mail(n, rng) for n in range(count)]
    links = sum(raw.count(b"<a href") for raw in campaign)
    write_mbox(home / "campaign.mbox", campaign)
    write_mbox(home / "campaign-few.mbox", campaign[:FEW])
    extra, how = jobs("rewrite")
    base = [str(BIN / "clickguard"), "rewrite", "--certs", str(workdir / "certs"), *extra]

    def fresh_dir() -> None:
        shutil.rmtree(home / "out", ignore_errors=True)

    def fresh_box() -> None:
        (home / "out.mbox").unlink(missing_ok=True)
        (home / "out.mbox.lock").unlink(missing_ok=True)

    for label, source, few, output, before, what in (
            ("directory of .eml files", "eml", "eml-few", "out", fresh_dir,
             f"{count:,} newsletters of {sizes / count / 1000:.0f} KB, 20 links each"),
            ("mbox of a campaign", "campaign.mbox", "campaign-few.mbox", "out.mbox", fresh_box,
             f"{count:,} phishing notices of {sum(map(len, campaign)) / count / 1000:.1f} KB, "
             f"{links / count:.1f} links each")):
        def run(name: str, output: str = output, before: Callable[[], None] = before) -> Timed:
            return timed([*base, str(home / name), "-o", str(home / output)], before=before)

        got = by_difference(functools.partial(run, source), functools.partial(run, few), count, rounds)
        print(f"clickguard rewrite, {label}: {got.rate:,.0f} messages/s (goal >= {REWRITE_GOAL:,}): {what}; "
              f"{count:,} in {got.large:.2f} s, {FEW} in {got.few:.2f} s, "
              f"rate = {count - FEW:,} / difference; "
              f"median of {rounds} alternating runs, {how}; CPU {got.cpu_us:.0f} us per message: "
              f"{verdict(got.rate >= REWRITE_GOAL)}", flush=True)
