"""The ops listener and the PAC file (issue 12)."""

from __future__ import annotations

from clickguard.policy.sections import _Model


class OpsConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""


class PacConfig(_Model):
    """Placeholder while issue 12 is built: no keys yet."""
