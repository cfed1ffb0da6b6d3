"""clickguard's command line: run the proxy, check URLs, check a policy, show feed status."""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from clickguard import files
from clickguard.audit import report, store
from clickguard.decision.batch import LineChecker, check_stream, format_result
from clickguard.decision.build import Built, build_judge, feeds_from_specs, judge_as, learned_hosts
from clickguard.decision.judge import Judge
from clickguard.errors import (
    ClickguardError,
    InputError,
    Problem,
    TokenError,
    URLError,
    UsageError,
)
from clickguard.files import user_files
from clickguard.intel.learned import FEED_NAME as LEARNED_FEED
from clickguard.intel.resolver import Resolver
from clickguard.mail.batch import default_jobs, jobs_count, rewrite_command
from clickguard.mail.home_line import judge_sender
from clickguard.mail.links import decode, is_click_link
from clickguard.mail.origin import TrustedBoundary, read_sender
from clickguard.policy.cluster import MAX_WORKERS, parse_redis_url
from clickguard.policy.model import AuditConfig, Policy, check_policy, load_policy
from clickguard.shipped import DEFAULT_POLICY
from clickguard.tokens import load_or_create_key
from clickguard.urls import canonical_ip, registered_domain


def _listen(value: str) -> tuple[str, int]:
    """HOST:PORT for --listen."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _count(value: str) -> int:
    """N for --workers: 1 to MAX_WORKERS."""
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a count of processes, 1 to {MAX_WORKERS}, got {value!r}")
    return int(value)


def _redis_url(value: str) -> str:
    """URL for --redis."""
    try:
        return parse_redis_url(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _when(value: str) -> float:
    """WHEN for report --since/--until: ISO 8601 or a duration back from now (24h, 7d)."""
    try:
        return report.parse_when(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration(value: str) -> float:
    """A duration such as 30d for --before, read as the policy reads audit.retention (seconds)."""
    try:
        seconds = AuditConfig.model_validate({"retention": value}).retention
    except ValidationError as e:
        raise argparse.ArgumentTypeError(e.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if seconds is None:
        raise argparse.ArgumentTypeError("give a duration such as 30d")
    return seconds


CHECK_EXIT = (
    "exit status: 0 when every URL was judged; 1 when some could not be (a URL that does not parse, "
    "a line of stdin that is not UTF-8 text): each gets its own result with an \"error\" and its "
    "action, and the batch goes on; 2 only when the check could not run at all (a bad policy, feed "
    "or option) or a worker process of --jobs died."
)
REWRITE_EXIT = (
    "exit status: 0 when every message was rewritten (or had no link to rewrite); 1 when some were "
    "passed through unchanged or skipped (a file that cannot be read), each named on stderr with "
    "its reason while the batch goes on, then a summary line; 2 only when the batch could not run "
    "at all (no such input, a bad policy or option, an output that cannot be written)."
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="clickguard", description="Click-time URL protection proxy against Thingbot-served pages.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the proxy (mitmproxy) with clickguard's addons")
    run.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                     help="address to listen on (default 127.0.0.1:8080)")
    run.add_argument("--policy", type=Path, default=DEFAULT_POLICY,
                     help="policy file (YAML; default: the shipped default policy)")
    run.add_argument("--feed", action="append", default=[], metavar="FORMAT:PATH",
                     help="extra feed (repeatable), FORMAT:PATH or FORMAT:URL")
    run.add_argument("--audit-log", type=Path, help="audit log (JSON Lines); overrides the policy")
    run.add_argument("--audit-store", type=Path, help="audit store (SQLite); overrides the policy")
    run.add_argument("--certs", type=Path, default=Path("certs"),
                     help="directory of the proxy CA and signing key (created at first run)")
    run.add_argument("--state-dir", type=Path, default=Path("var"),
                     help="feed caches and status (default var/)")
    run.add_argument("--ops", metavar="HOST:PORT",
                     help="ops listener: /healthz, /readyz, /metrics, /proxy.pac (over the policy's "
                          "ops.listen)")
    run.add_argument("--workers", type=_count, metavar="N",
                     help="proxy processes sharing the listen address (over the policy's cluster.workers; "
                          "default 1)")
    run.add_argument("--redis", type=_redis_url, metavar="URL",
                     help="redis://HOST:PORT/DB that workers and nodes share state in (over the policy's "
                          "cluster.redis)")
    run.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
                     help="the proxy's event loop (default asyncio; see clickguard/proxy/event_loop.py)")
    run.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                     help="any other mitmproxy option, passed through")
    run.add_argument("--check-config", action="store_true",
                     help="check the policy, its files and the writable places, then exit "
                          "(0: it would start; 1: problems, one a line) — for systemd's ExecStartPre")

    chk = sub.add_parser("check", help="judge URLs against the policy and feeds", epilog=CHECK_EXIT)
    chk.add_argument("url", help="URL to check, or - to read URLs one per line from stdin")
    chk.add_argument("--origin", help="IP address of the e-mail's origin, judged against the feeds")
    chk.add_argument("--origin-received", metavar="LINE",
                     help="the Received: header your relay wrote when the mail came in; its sender is the "
                          "origin (as --origin), and a home line's shape adds origin.home_line")
    chk.add_argument("--feed", action="append", default=[], metavar="FORMAT:PATH")
    chk.add_argument("--policy", type=Path, help="policy file (default: the shipped default policy)")
    chk.add_argument("--json", action="store_true", help="one JSON object per URL")
    chk.add_argument("--resolve", action="store_true",
                     help="also resolve host names and judge their addresses (off by default)")
    chk.add_argument("--user", help="judge as this proxy user: the first policy group listing them applies")
    chk.add_argument("--group", help="judge by this policy group's rules (as a user in its ldap_groups)")
    chk.add_argument("--client", metavar="ADDRESS", help="judge as this client address (groups' networks)")
    chk.add_argument("--state-dir", type=Path, default=Path("var"),
                     help="the proxy's state: feed caches and the hosts it learned (default var/)")
    chk.add_argument("--jobs", type=jobs_count, metavar="N",
                     help="processes judging stdin beyond its first 256 KB; output identical for any N "
                          "(default: one per CPU)")

    pol = sub.add_parser("policy", help="policy tools")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    pol_check = pol_sub.add_parser("check", help="validate a policy file")
    pol_check.add_argument("file", type=Path)

    feeds = sub.add_parser("feeds", help="feed tools")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True)
    status = feeds_sub.add_parser("status", help="entries, source, age and last error per feed")
    status.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    status.add_argument("--feed", action="append", default=[], metavar="FORMAT:PATH")
    status.add_argument("--state-dir", type=Path, default=Path("var"))
    status.add_argument("--json", action="store_true")

    rw = sub.add_parser("rewrite", help="rewrite the links of e-mail into signed click links",
                        epilog=REWRITE_EXIT)
    rw.add_argument("input", type=Path, help="an .eml file, a directory of them, or an mbox file")
    rw.add_argument("-o", "--output", type=Path,
                    help="where to write (a file, or a directory for a directory; default: stdout)")
    rw.add_argument("--policy", type=Path, help="policy (click host, relays; default: the shipped one)")
    rw.add_argument("--certs", type=Path, default=Path("certs"), help="where clickguard.key is (or goes)")
    rw.add_argument("--recipient", help="the recipient, when the To: header does not say it")
    rw.add_argument("--jobs", type=jobs_count, metavar="N",
                    help="processes rewriting a directory or an mbox (default: one per CPU)")

    dec = sub.add_parser("decode", help="print the target of a click link or of a vendor-wrapped link")
    dec.add_argument("url")
    dec.add_argument("--json", action="store_true", help="also the click context and the wrappers peeled")
    dec.add_argument("--certs", type=Path, default=Path("certs"), help="where clickguard.key is")
    dec.add_argument("--policy", type=Path, help="policy naming the click host (default: the shipped one)")

    aud = sub.add_parser("audit", help="audit store tools")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    aud_import = aud_sub.add_parser("import", help="load a JSON Lines audit log into the store (idempotent)")
    aud_import.add_argument("file", type=Path, help="a JSON Lines audit log")
    aud_prune = aud_sub.add_parser("prune", help="delete records older than the retention from the store")
    aud_prune.add_argument("--before", type=_duration, metavar="DURATION",
                           help="age to delete from, e.g. 30d (default: the policy's audit.retention)")
    for command in (aud_import, aud_prune):
        command.add_argument("--store", type=Path, help="the store (default: the policy's audit.store)")
        command.add_argument("--policy", type=Path, help="policy (default: the shipped default policy)")

    adm = sub.add_parser("admin", help="dashboard tools")
    adm_sub = adm.add_subparsers(dest="admin_command", required=True)
    adm_sub.add_parser("hash-password",
                       help="print a password hash for the policy's admin.users (password from stdin "
                            "or asked for; never an argument)")

    rep = sub.add_parser("report", help="what was clicked, blocked and why, who is targeted, the Thingbot "
                                        "share; or every decision about one host or click")
    rep.add_argument("--store", type=Path, action="append",
                     help="an audit store, or a directory of them (*.sqlite); repeat for one report over "
                          "several nodes' stores (default: the policy's audit.store)")
    rep.add_argument("--policy", type=Path, help="policy (default: the shipped default policy)")
    rep.add_argument("--since", type=_when, metavar="WHEN",
                     help="from when: ISO 8601 (UTC unless it says) or back from now, e.g. 24h, 7d")
    rep.add_argument("--until", type=_when, metavar="WHEN", help="until when (exclusive), as --since")
    rep.add_argument("--limit", type=int, help="rows per table (default 20), records of a drill-down (500)")
    rep.add_argument("--group", help="only the decisions made under this policy group's rules")
    rep_out = rep.add_mutually_exclusive_group()
    rep_out.add_argument("--json", action="store_true", help="print JSON instead of the text summary")
    rep_out.add_argument("--html", type=Path, metavar="FILE",
                         help="write one self-contained HTML file (inline CSS and SVG charts, no script)")
    rep_drill = rep.add_mutually_exclusive_group()
    rep_drill.add_argument("--host", help="drill down: every decision about this host, newest first")
    rep_drill.add_argument("--click", metavar="ID",
                           help="drill down: one click link (the click, its hops and continues)")

    ca = sub.add_parser("ca", help="create the proxy CA if needed and print where its certificate is")
    ca.add_argument("--certs", type=Path, default=Path("certs"))

    sq = sub.add_parser("squid-helper", help="answer Squid's external_acl_type lookups (%%URI): OK when "
                        "clickguard would block, ERR otherwise")
    sq.add_argument("--policy", type=Path, default=DEFAULT_POLICY,
                    help="policy file (YAML; default: the shipped default policy)")
    sq.add_argument("--feed", action="append", default=[], metavar="FORMAT:PATH")
    sq.add_argument("--state-dir", type=Path, default=Path("var"),
                    help="the proxy's state directory: feed caches and learned Thingbots (default var/)")
    sq.add_argument("--redis", type=_redis_url, metavar="URL",
                    help="the proxies' Redis (over the policy's cluster.redis): hosts they learn, at once")
    sq.add_argument("--certs", type=Path, default=Path("certs"),
                    help="the proxies' certs directory: its clickguard.key verifies what comes through Redis")
    sq.add_argument("--no-resolve", action="store_true",
                    help="judge offline: do not resolve host names (Squid resolves them anyway)")
    sq.add_argument("--warn", choices=("block", "pass"), default="block",
                    help="what a warn verdict answers: block (OK, default: a helper cannot show a warn "
                         "page with its continue button) or pass (ERR)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `clickguard` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "policy":
            return cmd_policy_check(args.file)
        if args.command == "feeds":
            return cmd_feeds_status(args)
        if args.command == "decode":
            return cmd_decode(args)
        if args.command == "rewrite":
            return cmd_rewrite(args)
        if args.command == "audit":
            return cmd_audit(args)
        if args.command == "admin":
            return cmd_hash_password()
        if args.command == "report":
            return cmd_report(args)
        if args.command == "squid-helper":
            return cmd_squid_helper(args)
        return cmd_ca(args.certs)
    except ClickguardError as e:  # the user's to fix; anything else is a bug and shows its traceback
        print(f"clickguard: {e}", file=sys.stderr)
        return 2


def _writable(path: Path) -> bool:
    """Whether a file or folder could be made or written at path, judged by its nearest existing ancestor."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.is_dir():
        return os.access(probe, os.W_OK | os.X_OK)
    return probe == path and os.access(probe, os.W_OK)  # nothing can be made under a file


def run_config_problems(args: argparse.Namespace) -> list[str]:
    """What would stop `clickguard run` with these arguments: policy problems, feeds, unwritable places."""
    problems = [str(p) for p in check_policy(args.policy)]
    try:
        feeds_from_specs(args.feed, Path.cwd())
    except UsageError as e:
        problems.append(f"--feed: {e}")
    if problems:
        return problems
    audit = load_policy(args.policy).policy.audit
    places = {"--certs": args.certs, "--state-dir": args.state_dir,
              "audit log": args.audit_log or audit.log, "audit store": args.audit_store or audit.store}
    return [f"{what}: {path}: not writable by this user" for what, path in places.items()
            if path is not None and not _writable(Path(path))]


def cmd_squid_helper(args: argparse.Namespace) -> int:
    """Serve Squid's external ACL lookups on stdin/stdout until Squid closes stdin."""
    from clickguard.decision import squid_helper

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # Squid copies a helper's stderr to cache.log
    feeds_from_specs(args.feed, Path.cwd())  # UsageError for a bad --feed before anything is read
    judging = squid_helper.Judging(args.policy, args.feed, args.state_dir)
    redis_url = args.redis or load_policy(args.policy).policy.cluster.redis
    if redis_url:
        if not (args.certs / "clickguard.key").is_file():
            raise UsageError(f"{args.certs / 'clickguard.key'}: no signing key; --certs names the proxies' "
                             "certs directory (what comes through Redis is signed with its key)")
        judging.share(redis_url, load_or_create_key(args.certs / "clickguard.key"))
    gc.freeze()  # the index lives as long as the helper: keep the cyclic GC off its million entries
    return squid_helper.run(judging, resolve=not args.no_resolve, warn_as=args.warn)


def cmd_run(args: argparse.Namespace) -> int:
    """Start mitmdump with clickguard's addons and options."""
    if args.check_config:
        problems = run_config_problems(args)
        print("\n".join(problems) if problems else f"{args.policy}: ok, clickguard run would start")
        return 1 if problems else 0
    from clickguard.proxy import workers  # (no mitmproxy import): N > 1 workers run under a supervisor

    if (count := workers.worker_count(args)) > 1:
        return workers.supervise(args, count)
    workers.become_worker(args.listen)  # only in a process the supervisor started: SO_REUSEPORT
    # Imported here: the other commands don't need mitmproxy.
    from mitmproxy.tools import cmdline, dump
    from mitmproxy.tools import main as mitmproxy_main

    from clickguard.proxy import engine
    from clickguard.proxy.addon import make_addons
    from clickguard.proxy.event_loop import use_event_loop

    class ClickguardMaster(dump.DumpMaster):
        """mitmdump with clickguard's addons registered directly (no script wrapper to traverse)."""

        def __init__(self, options: Any, **kwargs: Any) -> None:
            super().__init__(options, **kwargs)
            engine.install(self)
            self.addons.add(*make_addons())

    host, port = args.listen
    argv = [
        "--listen-host", host, "--listen-port", str(port),
        "--set", f"confdir={args.certs}",
        "--set", "connection_strategy=lazy",
        "--set", "flow_detail=0",
        "--set", f"clickguard_policy={args.policy}",
        "--set", f"clickguard_state_dir={args.state_dir}",
    ]
    for feed in args.feed:
        argv += ["--set", f"clickguard_feeds={feed}"]
    if args.audit_log:
        argv += ["--set", f"clickguard_audit_log={args.audit_log}"]
    if args.audit_store:
        argv += ["--set", f"clickguard_audit_store={args.audit_store}"]
    if args.ops:
        argv += ["--set", f"clickguard_ops={args.ops}"]
    if args.redis:
        argv += ["--set", f"clickguard_redis={args.redis}"]
    for option in args.set:
        argv += ["--set", option]
    # mitmproxy writes the CA's certificates into certs/ under the process's umask (its keys 0600):
    # at least 027 here, so none is ever world-writable or -readable. Before any thread starts.
    files.restrict_umask()
    # SIGHUP would end the process until the proxy's handler reopens the log with it (Config.running).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with user_files():
        files.private_dir(args.certs)
    use_event_loop(args.event_loop)  # mitmproxy's asyncio.run starts it
    mitmproxy_main.run(ClickguardMaster, cmdline.mitmdump, argv)
    return 0


def policy_or_default(policy_path: Path | None) -> Policy:
    """The named policy, else the shipped default policy."""
    return load_policy(policy_path or DEFAULT_POLICY).policy


def load_judge(policy_path: Path | None, feed_specs: Sequence[str], state_dir: Path) -> Built:
    """The judge the proxy keeping its state in state_dir would build: policy, feeds, learned hosts."""
    built = build_judge(policy_or_default(policy_path), state_dir, feed_specs=feed_specs)
    gc.freeze()  # the index lives as long as the command: keep the cyclic GC off its million entries
    return built


def origin_of_received(judge: Judge, line: str, origin_ip: str | None) -> tuple[str, str | None]:
    """(origin, home-line evidence in words) from `check --origin-received LINE`; UsageError if unreadable."""
    sender = read_sender(line)
    if sender is None:
        raise UsageError("--origin-received: the line names no sender address (expected the shape "
                         "'from HELO (NAME [IP]) by RELAY …')")
    if origin_ip is not None and canonical_ip(origin_ip) != sender.address:
        raise UsageError(f"--origin {origin_ip} is not the sender of --origin-received ({sender.address})")
    email = judge.policy.email
    boundary = TrustedBoundary(email.trusted_relays, email.relay_networks)
    home = judge_sender(sender, own_relay=boundary.is_relay_name)
    return sender.address, home.detail() if home is not None else None


def cmd_check(args: argparse.Namespace) -> int:
    """Judge one URL, or many from stdin, and print the verdicts; exit status as CHECK_EXIT says."""
    judge, _feeds = load_judge(args.policy, args.feed, args.state_dir)
    judge = judge_as(judge, user=args.user, group=args.group, client=args.client)
    resolver = Resolver() if args.resolve else None
    origin_ip, home_line = args.origin, None
    if args.origin_received is not None:
        origin_ip, home_line = origin_of_received(judge, args.origin_received, origin_ip)
    _results_out(as_json=args.json)
    checker = LineChecker(judge, as_json=args.json, origin_ip=origin_ip, home_line=home_line,
                          resolver=resolver)
    if args.url != "-":
        result = checker.result(args.url)
        if "host" in result:
            result["registered_domain"] = registered_domain(result["host"])
        _print_result(result, args.json, sys.stdout)
        return 1 if "error" in result else 0
    unjudged = check_stream(checker, sys.stdin.buffer, sys.stdout, args.jobs or default_jobs())
    return 1 if unjudged else 0


def _results_out(*, as_json: bool) -> None:
    """Make stdout take any result: JSON Lines in UTF-8, text in the locale's encoding.

    A URL given as an argument may hold lone surrogates (bytes that were not UTF-8): they
    are written as \\udcff, which in JSON is the string's own escape, so every line stays
    valid and no result can stop the batch.
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        if as_json:
            sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
        else:
            sys.stdout.reconfigure(errors="backslashreplace")


def _stdin_lines() -> Iterator[str]:
    """The lines of standard input; UsageError when they are not text in its encoding."""
    try:
        yield from sys.stdin
    except UnicodeDecodeError as e:
        raise UsageError(str(e)) from e


def _print_result(result: dict[str, Any], as_json: bool, stream: TextIO) -> None:
    """Print one result; the text form adds the details under the line."""
    stream.write(format_result(result, as_json))
    if not as_json:
        if "error" in result:
            stream.write(f"  error: {result['error']}\n")
        if "group" in result:
            stream.write(f"  group: {result['group']}\n")
        for reason in result["reasons"]:
            stream.write(f"  {reason['code']}: {reason['detail']}\n")


def cmd_policy_check(path: Path) -> int:
    """Print every problem of a policy file as file:line: field: message; exit 1 if any."""
    problems = check_policy(path)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    policy = load_policy(path).policy
    groups = f", {len(policy.groups)} groups" if policy.groups else ""
    print(f"{path}: ok ({len(policy.feeds)} feeds{groups})")
    return 0


def _age(seconds: float | None) -> str:
    """A duration for people."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def cmd_feeds_status(args: argparse.Namespace) -> int:
    """Per feed: entries, source, age, last error; from the running proxy if it published them."""
    status_file = args.state_dir / "feeds-status.json"
    if status_file.exists() and not args.feed:
        published = _published_status(status_file)
        feeds = published["feeds"]
        origin = f"published by the running proxy {_age(time.time() - published['written_at'])} ago"
        audit_health = published.get("audit")
    else:
        _judge, feed_set = load_judge(args.policy, args.feed, args.state_dir)
        feeds = feed_set.snapshot()
        origin = "loaded now from the policy (no running proxy published a status)"
        audit_health = None
    with user_files():  # a learned-hosts file that is not one is set aside: that may fail
        learned = learned_hosts(args.state_dir)
    if args.json:
        print(json.dumps({"origin": origin, "feeds": feeds,
                          "learned": [h.as_dict() for h in learned], "audit": audit_health}, indent=1))
        return 0
    now = time.time()
    width = max([len("feed"), len(LEARNED_FEED), *(len(f["name"]) for f in feeds)])
    print(f"# {origin}")
    print(f"{'feed':<{width}} {'format':<14} {'entries':>9} {'skipped':>8} {'age':>7}  source / last error")
    for feed in feeds:
        age = _age(now - feed["data_time"]) if feed.get("data_time") else "-"
        source = feed["source"]
        if not feed.get("data_time") and source.startswith(("http://", "https://")):
            source += " (never fetched)"  # an offline start: served without it until a fetch works
        print(f"{feed['name']:<{width}} {feed['format']:<14} {feed['entries']:>9} {feed['skipped']:>8} "
              f"{age:>7}  {source}")
        if feed.get("last_error"):
            print(f"{'':<{width}} error: {feed['last_error']}")
    hosts = sorted(learned, key=lambda h: h.learned_at)
    newest = _age(now - hosts[-1].learned_at) if hosts else "-"
    print(f"{LEARNED_FEED:<{width}} {'learned':<14} {len(hosts):>9} {0:>8} {newest:>7}  "
          f"hosts that served appliance redirects or payloads ({learned.path})")
    if learned.error:
        print(f"{'':<{width}} error: {learned.error}")
    for host in hosts:
        print(f"{'':<{width}} {host.host}: {host.evidence} (learned {_age(now - host.learned_at)} ago, "
              f"expires in {_age(host.expires - now)})")
    _print_audit_health(audit_health, now)
    return 0


def _print_audit_health(health: dict[str, Any] | None, now: float) -> None:
    """The running proxy's audit sinks: failing or not, and the last error with its age."""
    if not isinstance(health, dict):
        return
    print(f"# audit: on_failure {health.get('on_failure')}, {health.get('written')} records written, "
          f"{health.get('not_recorded')} not recorded")
    for name in ("log", "store", "syslog"):
        sink = health.get(name)
        if not isinstance(sink, dict):
            continue
        state = "FAILING" if sink.get("failing") else "ok"
        extra = f", {sink['backlog']} records waiting for it" if sink.get("backlog") else ""
        if name == "syslog":
            extra += f" ({sink.get('format')}), {sink.get('sent')} sent, {sink.get('dropped')} dropped"
        print(f"audit {name:<5} {state:<7} {sink.get('path')}{extra}")
        if sink.get("last_error"):
            when = f" ({_age(now - sink['last_error_at'])} ago)" if sink.get("last_error_at") else ""
            print(f"{'':<11} last error{when}: {sink['last_error']}")


def _published_status(path: Path) -> dict[str, Any]:
    """The feeds' status a running proxy published; InputError if it is not one."""
    with user_files():
        text = path.read_text()
    try:
        published = json.loads(text)
    except ValueError as e:
        published = str(e)
    if not (isinstance(published, dict) and isinstance(published.get("feeds"), list)
            and isinstance(published.get("written_at"), (int, float))):
        why = published if isinstance(published, str) else "no feeds or time in it"
        raise InputError([Problem(str(path), None, "", f"not a feeds status file ({why})")])
    return published


def cmd_rewrite(args: argparse.Namespace) -> int:
    """Rewrite one message, a directory of messages or an mbox; exit status as REWRITE_EXIT says."""
    return rewrite_command(args.input, args.output, policy_or_default(args.policy), certs=args.certs,
                           recipient=args.recipient, jobs=args.jobs or default_jobs())


def cmd_decode(args: argparse.Namespace) -> int:
    """Print a link's original target; exit 2 with a one-line reason if it is tampered or unparseable."""
    click_host = policy_or_default(args.policy).click_host
    key_path = args.certs / "clickguard.key"
    with user_files():
        key = load_or_create_key(key_path) if key_path.exists() else None
    if key is None and is_click_link(args.url, click_host):
        print(f"clickguard decode: cannot verify a click link without its key ({key_path} not found)",
              file=sys.stderr)
        return 2
    try:
        decoded = decode(args.url, key, click_host)
    except (TokenError, URLError) as e:
        print(f"clickguard decode: {e}", file=sys.stderr)
        return 2
    if args.json:
        context = decoded.context._asdict() if decoded.context else None
        print(json.dumps({"target": decoded.target, "host_hint": decoded.host_hint,
                          "layers": list(decoded.layers), "context": context}))
    elif decoded.target is not None:
        print(decoded.target)
    else:
        print(f"host:{decoded.host_hint}")
    return 0


def _audit_store(args: argparse.Namespace) -> Path:
    """The store an audit command works on: --store, else the policy's audit.store."""
    if args.store is not None:
        return Path(args.store)
    store_path = policy_or_default(args.policy).audit.store
    if store_path is None:
        raise UsageError("the policy keeps no audit store (audit.store: off); name one with --store")
    return store_path


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit import` and `audit prune`; a store SQLite cannot use exits 2 with one line."""
    try:
        if args.audit_command == "import":
            return cmd_audit_import(args)
        return cmd_audit_prune(args)
    except sqlite3.Error as e:
        print(f"clickguard audit {args.audit_command}: store: {e}", file=sys.stderr)
        return 2


def cmd_audit_import(args: argparse.Namespace) -> int:
    """Load a JSON Lines audit log into the store; records already there are skipped."""
    path: Path = args.file
    try:
        with open(path, "rb"):  # before the store is opened: a wrong name creates no empty store
            pass
    except OSError as e:
        print(f"clickguard audit import: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    store_path = _audit_store(args)
    with user_files():
        connection = store.connect(store_path)
        try:
            imported, skipped = store.import_jsonl(connection, path)
        finally:
            store.close(connection)
    print(f"imported {imported} records, skipped {skipped} (already in the store or not audit records)")
    return 0


def cmd_audit_prune(args: argparse.Namespace) -> int:
    """Delete records older than --before (default: the policy's retention) from the store."""
    age: float | None = args.before
    if age is None:
        age = policy_or_default(args.policy).audit.retention
        if age is None:
            raise UsageError("the policy keeps records forever (audit.retention: off); give --before")
    store_path = _audit_store(args)
    with user_files():
        connection = store.connect(store_path)
    deleted = 0
    try:
        # Short transactions, so a running proxy writing to the same store never waits long.
        while (batch := store.prune(connection, time.time() - age, 5000)) > 0:
            deleted += batch
    finally:
        store.close(connection)
    print(f"deleted {deleted} records older than {_age(age)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`report`: the text summary, --json or --html; with --host or --click, that drill-down."""
    try:  # read-only: never create an empty store by asking for a report
        paths = report.store_paths(args.store or [_audit_store(args)])
    except sqlite3.Error as e:
        print(f"clickguard report: {e}", file=sys.stderr)
        return 2
    drill = args.host is not None or args.click is not None
    limit: int = args.limit if args.limit is not None else 500 if drill else 20
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if drill and args.group is not None:
        raise UsageError("--group narrows the summary; a drill-down (--host, --click) shows every record")
    try:
        if drill:
            records = report.drilldown_stores(paths, host=args.host, click_id=args.click, limit=limit)
        else:
            built = report.report_stores(paths, since=args.since, until=args.until, limit=limit,
                                         group=args.group)
    except sqlite3.Error as e:
        print(f"clickguard report: {e}", file=sys.stderr)
        return 2
    if drill:
        title = (f"clickguard: host {args.host}" if args.host is not None
                 else f"clickguard: click {args.click}")
        if args.html:
            with user_files():
                args.html.write_text(report.drilldown_page(records, title=title), encoding="utf-8")
        elif args.json:
            print(json.dumps(records, indent=2, ensure_ascii=False))
        else:
            sys.stdout.write(report.drilldown_text(records))
        return 0
    if args.html:
        with user_files():
            args.html.write_text(report.report_html(built), encoding="utf-8")
        print(f"report written to {args.html}")
    elif args.json:
        print(report.report_json(built))
    else:
        sys.stdout.write(report.report_text(built))
    return 0


MIN_PASSWORD = 8


def cmd_hash_password() -> int:
    """Print an argon2id hash of a password read from stdin (first line) or asked for twice on a terminal."""
    import getpass

    from clickguard.web.passwords import hash_password

    # Never from argv: arguments show in `ps` and in shell history.
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("clickguard admin hash-password: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = next(_stdin_lines(), "").removesuffix("\n").removesuffix("\r")
    if len(password) < MIN_PASSWORD:
        print(f"clickguard admin hash-password: use at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    print("Put it under admin.users in the policy, e.g.  alice: <the line above>", file=sys.stderr)
    return 0


def cmd_ca(certs: Path) -> int:
    """Create the proxy CA in the certs directory if needed; print the certificate's path."""
    from mitmproxy.certs import CertStore

    files.restrict_umask()  # see cmd_run
    with user_files():
        files.private_dir(certs)
        CertStore.from_store(certs, "mitmproxy", 2048)
    print(certs / "mitmproxy-ca-cert.pem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
