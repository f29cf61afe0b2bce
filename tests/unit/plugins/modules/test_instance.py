"""mailfleet.postfix.instance as Ansible runs it: arguments in, exit_json/fail_json out.

The primary instance is a throwaway copy in a temp directory (see the module_utils tests); the module
is pointed at it by replacing the compiled-in default lookup.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _postfix_instances
from ansible_collections.mailfleet.postfix.plugins.modules import instance as module
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import make_primary

pytestmark = pytest.mark.skipif(
    shutil.which("postconf", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None or os.geteuid() != 0,
    reason="needs root and Postfix installed",
)

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    from contextlib import contextmanager
    from unittest import mock

    from ansible.module_utils import basic

    @contextmanager
    def patch_module_args(args: dict[str, Any]) -> Any:
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield


class Exit(Exception):
    def __init__(self, failed: bool, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg"))
        self.failed = failed
        self.result = result


@pytest.fixture
def primary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    etc = make_primary(tmp_path)
    monkeypatch.setattr(_postfix_instances.Postfix, "primary_directory", lambda self: str(etc))

    def exit_json(self: Any, **kw: Any) -> None:
        raise Exit(False, kw)

    def fail_json(self: Any, msg: str, **kw: Any) -> None:
        raise Exit(True, dict(msg=msg, **kw))

    monkeypatch.setattr(module.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(module.AnsibleModule, "fail_json", fail_json)
    return etc


def call(**args: Any) -> Exit:
    with patch_module_args(args), pytest.raises(Exit) as info:
        module.main()
    return info.value


def test_create_then_idempotent(primary: Path) -> None:
    first = call(name="postfix-edge", master_service_disable="")
    assert not first.failed, first.result
    got = first.result
    assert got["changed"] and got["created"] and got["registered"]
    assert got["config_directory"] == str(primary.parent / "postfix-edge")
    assert got["msg"] == f"postfix-edge: created ({got['config_directory']})"
    assert "diff" not in got
    second = call(name="postfix-edge", master_service_disable="")
    assert second.result["changed"] is False
    assert second.result["msg"] == "postfix-edge: no change needed"
    assert second.result["actions"] == []


def test_check_and_diff_mode(primary: Path) -> None:
    got = call(name="postfix-edge", _ansible_check_mode=True, _ansible_diff=True).result
    assert got["changed"] and got["msg"].startswith("postfix-edge: would be created")
    headers = [d["after_header"] for d in got["diff"]]
    config = primary.parent / "postfix-edge"
    assert headers == [str(config / "main.cf"), str(config / "master.cf"), str(primary / "main.cf")]
    assert "multi_instance_directories = " + str(config) in got["diff"][2]["after"]
    assert not config.exists()


def test_backup_of_the_primary_main_cf(primary: Path) -> None:
    got = call(name="postfix-edge", backup=True).result
    backup = got["backup_files"][str(primary / "main.cf")]
    assert "multi_instance_directories" not in Path(backup).read_text()


def test_errors_are_one_clear_message(primary: Path) -> None:
    bad = call(name="edge")
    assert bad.failed and "is not valid" in bad.result["msg"]
    call(name="postfix-edge")
    queue = primary.parent.parent / "spool" / "postfix-edge"
    (queue / "hold" / "MSG1").write_text("x")
    refused = call(name="postfix-edge", state="absent")
    assert refused.failed and "still holds 1 message(s)" in refused.result["msg"]
    gone = call(name="postfix-edge", state="absent", force=True).result
    assert gone["removed"] and gone["queued"] == 1 and not gone["registered"]
    assert not queue.exists()


def test_primary_instance(primary: Path) -> None:
    got = call(name="-").result
    assert got == {**got, "changed": False, "name": "-", "config_directory": str(primary), "created": False}
