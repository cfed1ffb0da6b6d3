"""Groups of users whose rules differ from the top-level policy (issue 12), policy groups."""

from __future__ import annotations

from clickguard.policy.sections import _Model


class GroupConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""
