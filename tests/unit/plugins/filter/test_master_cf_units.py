"""master_cf_units filter, and every corpus master.cf through systemd-analyze verify."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.filter.master_cf_units import FilterModule, master_cf_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import Instance, build_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf

ROOT = Path(__file__).resolve().parents[4]
CORPUS = ROOT.parent / "shared" / "corpus" / "valid"
CORPUS_FILES = sorted(CORPUS.glob("*.cf")) if CORPUS.is_dir() else []
DEBIAN = (ROOT / "tests/unit/plugins/module_utils/fixtures/debian-master.cf").read_text()
# Entries the mapping refuses on purpose, by corpus file: {file: reason}. None so far.
EXPECTED_REFUSALS: dict[str, str] = {}


def test_registered() -> None:
    assert FilterModule().filters()["master_cf_units"] is master_cf_units


def test_text_and_parsed_entries_agree() -> None:
    from_text = master_cf_units(DEBIAN)
    from_list = master_cf_units(MasterCf.parse(DEBIAN).to_list())
    assert from_text == from_list
    assert "postfix-default-smtp-inet.socket" in from_text


def test_instance_facts() -> None:
    units = master_cf_units("cleanup unix n - y - 0 cleanup\n",
                            {"multi_instance_name": "postfix-out", "queue_directory": "/var/spool/postfix-out",
                             "default_process_limit": "20"})
    assert "postfix-out-cleanup-unix.socket" in units
    assert "Backlog=20" in units["postfix-out-cleanup-unix.socket"]


@pytest.mark.parametrize("bad", [42, None, {"a": 1}])
def test_wrong_input_type(bad: object) -> None:
    with pytest.raises(AnsibleFilterError, match="expects master.cf text"):
        master_cf_units(bad)


def test_refusal_becomes_filter_error() -> None:
    with pytest.raises(AnsibleFilterError, match="line 2.*frobnicate"):
        master_cf_units("smtp inet n - y - - smtpd\nx unix - - y - - frobnicate\n")


def test_instance_must_be_a_mapping() -> None:
    with pytest.raises(AnsibleFilterError, match="instance"):
        master_cf_units(DEBIAN, "postfix-out")  # type: ignore[arg-type]


def _resolver(host: str) -> list[str]:
    return {"localhost": ["127.0.0.1", "::1"]}[host]


@pytest.mark.skipif(not CORPUS_FILES, reason="corpus not found at ../shared/corpus")
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_units_pass_systemd_analyze_verify(path: Path, tmp_path: Path) -> None:
    if path.name in EXPECTED_REFUSALS:
        pytest.skip(EXPECTED_REFUSALS[path.name])
    units = build_units(path.read_bytes().decode(), Instance(source=path.name), resolver=_resolver)
    names = []
    for name, content in units.units.items():
        (tmp_path / name).write_text(content)
        names.append(str(tmp_path / name.replace("@.service", "@1.service")))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], capture_output=True, text=True, check=False)
    # An unknown (misspelt) key is only a warning: any output is a failure.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr
