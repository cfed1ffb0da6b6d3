"""Who the user is and which group's rules apply (issue 12)"""

from __future__ import annotations

from clickguard.policy.sections import _Model


class IdentityConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""


class GroupConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""
