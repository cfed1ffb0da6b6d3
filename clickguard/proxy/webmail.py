"""Rewrites the links of webmail pages into click links as they pass through the proxy."""

from __future__ import annotations

import time

from cachetools import LRUCache
from mitmproxy import http

from clickguard.mail.links import ClickContext, click_context
from clickguard.mail.rewrite import RewriteSettings, rewrite_html
from clickguard.policy.model import Policy
from clickguard.proxy.guard import client_of
from clickguard.proxy.runtime import Runtime
from clickguard.urls import parent_domains

# Click links remembered per context: a plain dict (looked up at C speed, link by link),
# emptied when a page leaves it over this size, so an attacker's pages cannot grow it.
_MEMO_LINKS = 2048


class Webmail:
    """HTML responses from the policy's `click_links.rewrite_hosts` get click links, bytes otherwise kept."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._settings: tuple[Policy, RewriteSettings] | None = None
        # Click links already made, per context (user and minute): pages repeat their links.
        self._memos: LRUCache[ClickContext, dict[str, str]] = LRUCache(maxsize=128)

    def _settings_for(self, policy: Policy) -> RewriteSettings:
        """Rewrite settings of the policy in force (built once per policy)."""
        if self._settings is None or self._settings[0] is not policy:
            settings = RewriteSettings(policy.click_host, self.runtime.key, policy.click_links.recipient,
                                       policy.click_links.skip_domains)
            self._settings = (policy, settings)
            self._memos.clear()
        return self._settings[1]

    def response(self, flow: http.HTTPFlow) -> None:
        """Rewrite the links of a webmail page (the browser's own navigation, never a download)."""
        policy = self.runtime.judge.policy
        hosts = policy.click_links.rewrite_hosts
        response = flow.response
        if not hosts or response is None or response.status_code != 200 or not flow.live:
            return
        if not response.headers.get("content-type", "").lower().startswith("text/html"):
            return
        if not any(d in hosts for d in parent_domains(flow.request.host.lower())):
            return
        text = response.get_text(strict=False)
        if text is None:
            return
        _client, user = client_of(flow)
        # A webmail page does not say which mail a link came from: the origin is unknown here.
        context = click_context(key=self.runtime.key, origin_ip=None, message_id=None, recipient=user,
                                recipient_mode=policy.click_links.recipient, rewritten_at=int(time.time()))
        settings = self._settings_for(policy)
        memo = self._memos.get(context)
        if memo is None:
            memo = self._memos[context] = {}
        rewritten, count = rewrite_html(text, context, settings, memo)
        if len(memo) > _MEMO_LINKS:
            memo.clear()
        if count:
            response.set_text(rewritten)
