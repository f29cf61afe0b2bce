# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.mailfleet.postfix`` importable for plain ``python -m pytest tests/unit``.

The checkout is not laid out as ansible_collections/mailfleet/postfix, so this ensures the same
link tools/collection-link.sh makes (build/collections/ansible_collections/mailfleet/postfix ->
checkout) and puts build/collections first on sys.path. ``ansible_collections`` is a namespace
package, so collections installed in site-packages stay importable beside it. This works without
ANSIBLE_COLLECTIONS_PATH and without ansible-core's collection loader, which pytest would have to
install before collecting any test module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "build" / "collections"


def _link_checkout() -> None:
    link = COLLECTIONS / "ansible_collections" / "mailfleet" / "postfix"
    if link.is_symlink() and link.resolve() == ROOT:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    # Replace atomically: parallel runs (pytest-xdist, make -j) may race here.
    tmp = link.with_name(f".postfix.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(ROOT, target_is_directory=True)
    tmp.replace(link)


_link_checkout()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# Wall-clock deadlines flake on a loaded 2-core CI machine; CI also runs a fixed set of examples
# so a red build is reproducible from its log.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _debian_12_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """The distribution's unit layout is a fixture, not the build host's /lib/systemd/system."""
    from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator

    monkeypatch.setattr(_masterless_generator, "UNIT_DIRS", (str(ROOT / "tests" / "unit" / "fixtures" / "systemd" / "debian-12"),))
