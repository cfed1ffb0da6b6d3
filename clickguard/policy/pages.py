"""Block, warn and message pages"""

from __future__ import annotations

from clickguard.policy.sections import _Model


class PagesConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""
