# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared descriptions of the action attributes of this collection's modules.

Usage in a module's DOCUMENTATION: the descriptions come from here, and so does the support of a
module that supports check mode, diff mode and idempotence fully (FULL), or that also validates
with Postfix's checks on a temporary copy in check mode (VALIDATED):

    extends_documentation_fragment:
      - mailfleet.postfix.attributes
      - mailfleet.postfix.attributes.full

A module's own attributes keys win over any fragment's (each attribute is merged key by key), so
a module adds its details or its platform (attributes.platform.platforms: debian) itself.
platform defaults to POSIX. Modules that never change the target list
mailfleet.postfix.attributes.info_module instead.
"""

from __future__ import annotations


class ModuleDocFragment:
    # Descriptions only, except platform: each module states its own support levels.
    DOCUMENTATION = r"""
options: {}
requirements:
  - Python 3.9 or newer on the managed host (see C(docs/support.md) for the tested distributions).
attributes:
  check_mode:
    description:
      - Can run in check mode and predict the C(changed) status without modifying the target.
  diff_mode:
    description:
      - Returns the changes made (or, in check mode, the changes that would be made) when run in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode with the same arguments, the second run reports no change.
      - This assumes that the target has not changed in a relevant way in between.
  platform:
    description: Target operating systems and families that can be operated against.
    support: N/A
    platforms: posix
"""

    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    FULL = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
"""

    VALIDATED = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - Check mode runs the same validation, Postfix's checks on a temporary copy included.
  diff_mode:
    support: full
  idempotent:
    support: full
"""
