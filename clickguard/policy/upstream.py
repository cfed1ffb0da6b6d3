"""The parent proxy (issue 12)"""

from __future__ import annotations

from clickguard.policy.sections import _Model


class UpstreamConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""
