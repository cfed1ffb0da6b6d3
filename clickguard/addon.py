"""`mitmdump -s clickguard/addon.py`: clickguard's addons for plain mitmproxy (clickguard.proxy.addon)."""

from clickguard.proxy.addon import addons as addons
