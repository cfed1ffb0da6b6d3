"""Who the user is: proxy authentication (issue 12), policy identity.proxy_auth."""

from __future__ import annotations

from clickguard.policy.sections import _Model


class IdentityConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""
