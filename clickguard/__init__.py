"""clickguard: a click-time URL protection proxy against pages served by compromised appliances."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clickguard")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
