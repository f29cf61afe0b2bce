# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every scenario: the hosts run the Debian release the support matrix says was tested.

tools/molecule.sh runs SCENARIO@RELEASE on that release's lab image and sets MAILFLEET_LAB_RELEASE;
a wrong or stale image would otherwise pass for a release it is not.
"""

from __future__ import annotations

import os
from typing import Any

# Debian release -> (Postfix major.minor, Python major.minor) as docs/support.md states them.
RELEASES = {"bullseye": ("3.5", "3.9"), "bookworm": ("3.7", "3.11"), "trixie": ("3.10", "3.13")}


def test_host_runs_the_release_under_test(host: Any) -> None:
    release = os.environ.get("MAILFLEET_LAB_RELEASE") or "bookworm"
    codename = host.run(". /etc/os-release && echo $VERSION_CODENAME").stdout.strip()
    assert codename == release
    postfix, python = RELEASES[release]
    assert host.run("postconf -h mail_version").stdout.strip().startswith(postfix + ".")
    assert host.run("/usr/bin/python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'").stdout.strip() == python
