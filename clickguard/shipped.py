"""Files that ship inside the package: the default policy, the appliance fingerprints, the self-test feed.

They live in ``policies/`` of the repository, where IT copies them from;
``clickguard/data`` is a link to that folder, so a built wheel carries the very
same files and an installed clickguard finds them wherever it runs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped(*parts: str) -> Path:
    """The path of a shipped data file or folder, e.g. ``shipped("fingerprints")``."""
    root = files("clickguard").joinpath("data", *parts)
    # A regular install (wheel or editable) unpacks to the file system; a zip import would not.
    if not isinstance(root, Path):
        raise RuntimeError(f"clickguard's data is not on the file system: {root}")
    return root


DEFAULT_POLICY = shipped("default.yaml")
FINGERPRINTS = shipped("fingerprints")
