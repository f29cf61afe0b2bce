"""Each role's meta/argument_specs.yml agrees with its defaults/main.yml: a required option has no default (else
the check never fires), every default is documented, and the documented default is the real one. The edge and
delivery roles document the instance role's variables too: those defaults are the instance role's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
# Variables of these roles that a profile role passes on (and documents) without defaulting them itself.
INHERITED = {"edge": ["instance"], "delivery": ["instance"]}


def defaults(role: str, root: Path = ROOT) -> dict[str, Any]:
    path = root / "roles" / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}


def entry_points(role: str, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    specs = yaml.safe_load((root / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    return {name: spec.get("options") or {} for name, spec in specs["argument_specs"].items()}


def problems(role: str, root: Path = ROOT) -> list[str]:
    own = defaults(role, root)
    inherited: dict[str, Any] = {}
    for other in INHERITED.get(role, []):
        inherited.update(defaults(other, root))
    found: list[str] = []
    documented: set[str] = set()
    for entry, options in entry_points(role, root).items():
        for name, option in options.items():
            documented.add(name)
            where = f"{role} {entry} {name}"
            if option.get("required"):
                if name in own:
                    found.append(f"{where}: required, but defaults/main.yml gives it a default")
                if "default" in option:
                    found.append(f"{where}: required, and the spec gives it a default")
                continue
            real = own[name] if name in own else inherited.get(name, None)
            if name in own or name in inherited:
                if "default" not in option:
                    found.append(f"{where}: defaults to {real!r}, the spec names no default")
                elif option["default"] != real:
                    found.append(f"{where}: the spec says {option['default']!r}, the defaults {real!r}")
    found += [f"{role} {name}: in defaults/main.yml, in no entry point of the spec" for name in own if name not in documented]
    return found


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_agree_with_defaults(role: str) -> None:
    assert problems(role) == []


def test_the_check_sees_a_required_option_with_a_default(tmp_path: Path) -> None:
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n"
        "      a: {type: list, required: true}\n      b: {type: int, default: 1}\n      c: {type: str}\n")
    (role / "defaults" / "main.yml").write_text("a: []\nb: 2\nc: x\nd: 0\n")
    got = "\n".join(problems("demo", tmp_path))
    assert "demo main a: required, but defaults/main.yml gives it a default" in got
    assert "demo main b: the spec says 1, the defaults 2" in got
    assert "demo main c: defaults to 'x', the spec names no default" in got
    assert "demo d: in defaults/main.yml, in no entry point of the spec" in got
