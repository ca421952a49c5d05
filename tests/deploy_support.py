"""
The files of C{deploy/} as tests use them: the systemd unit's settings, and the
C{setpriv} prefix that starts a process with the unit's capability bounding set and
C{NoNewPrivileges}, as systemd would.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import require_tool

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "deploy" / "systemd" / "gameproto@.service"
NGINX_SITE = ROOT / "deploy" / "nginx" / "gameproto.conf"


def unit_settings() -> dict[str, str]:
    """The [Service] settings of the shipped unit (the last value of each key)."""
    settings: dict[str, str] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def within_unit_capabilities() -> list[str]:
    """The argv prefix that runs a command with only what the unit lets the server keep."""
    settings = unit_settings()
    caps = ",".join("+" + cap.lower().removeprefix("cap_")
                    for cap in settings["CapabilityBoundingSet"].split())
    prefix = [require_tool("setpriv"), f"--bounding-set=-all,{caps}"]
    if settings.get("NoNewPrivileges") == "yes":
        prefix.insert(1, "--no-new-privs")
    return prefix
