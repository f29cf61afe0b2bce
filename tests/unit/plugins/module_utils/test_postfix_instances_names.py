"""Instance names: one rule (_postfix_semantics.instance_name) for every path and unit name derived from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator, _postfix_instances
from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_unit import ClassicInstance, build_classic_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import Instance
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCfError
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import (
    INSTANCE_SHORT_MAX,
    InstanceNameError,
    instance_name,
    instance_short_name,
    short_instance_name,
)

VALID = {
    "-": "default", "": "default", "postfix-out": "out", "postfix-out-2": "out-2", "postfix-a.b_c": "a.b_c",
    "postfix-mx1.example.com": "mx1.example.com", "postfix-...": "...", "postfix-.x": ".x",
    "postfix-" + "a" * INSTANCE_SHORT_MAX: "a" * INSTANCE_SHORT_MAX,
}
INVALID = {
    "postfix-..": "'.' and '..'",
    "postfix-.": "'.' and '..'",
    "postfix-a/b": "ASCII letters",
    "postfix-../../etc": "ASCII letters",
    "postfix-a\0b": "ASCII letters",
    "postfix-a\n": "ASCII letters",
    "postfix-a\nb": "ASCII letters",
    " postfix-a": "must be '-'",
    "postfix-a ": "ASCII letters",
    "postfix-" + "a" * (INSTANCE_SHORT_MAX + 1): "more than",
    "postfix-" + "a" * 4096: "more than",
    "postfix-é": "ASCII letters",
    "postfix-ａ": "ASCII letters",  # fullwidth: isalnum() but not ASCII
    "postfix-": "nothing follows",
    "postfix--x": "must not start with '-'",
    "postfix-default": "primary instance",
    "edge": "must be '-'",
    "Postfix-x": "must be '-'",
    "--": "must be '-'",
    # postmulti accepts these, systemd would read them: specifiers, template separator, list separator.
    "postfix-a%h": "ASCII letters",
    "postfix-a@b": "ASCII letters",
    "postfix-a:b": "ASCII letters",
    "postfix-a=b": "ASCII letters",
    "postfix-+a": "ASCII letters",
    "postfix-!a": "ASCII letters",
}


@pytest.mark.parametrize(("name", "short"), VALID.items())
def test_valid_names(name: str, short: str) -> None:
    assert instance_name(name) == (name or "-")
    assert instance_short_name(name) == short
    assert Instance(name=name).short_name == short


@pytest.mark.parametrize(("name", "reason"), INVALID.items(), ids=[ascii(n)[:40] for n in INVALID])
def test_invalid_names_are_refused_everywhere(name: str, reason: str) -> None:
    with pytest.raises(InstanceNameError, match=reason) as caught:
        instance_name(name, source="/etc/postfix-x/main.cf")
    assert caught.value.field_name == "multi_instance_name" and caught.value.path == "/etc/postfix-x/main.cf"
    assert "\n" not in str(caught.value) and "\0" not in str(caught.value) and len(str(caught.value)) < 400
    assert isinstance(caught.value, MasterCfError)  # what every caller of the library already handles
    with pytest.raises(_postfix_instances.InstanceError, match="is not valid"):  # the instance module
        _postfix_instances.validate_name(name)
    # master-less: every path and unit name of the instance
    inst = Instance(name=name)
    for attribute in ("short_name", "prefix", "run_dir", "flow_fifo", "holder_socket", "stamp_dir", "target", "slice"):
        with pytest.raises(InstanceNameError):
            getattr(inst, attribute)
    with pytest.raises(InstanceNameError):
        assert ClassicInstance(name=name).unit
    if name != name.strip():
        return  # from_params reads postconf output, whose values are stripped (as main.cf's are)
    with pytest.raises(InstanceNameError):
        assert Instance.from_params({"multi_instance_name": name}).run_dir
    with pytest.raises(InstanceNameError):
        ClassicInstance.from_params({"multi_instance_name": name})


def test_postfix_dotdot_cannot_reach_run_or_var_lib() -> None:
    """The reported case: 'postfix-..' put the flow FIFO in /run and the unit set in /var/lib themselves."""
    with pytest.raises(InstanceNameError):
        assert Instance(name="postfix-..").flow_fifo
    with pytest.raises(MasterCfError, match="'.' and '..'"):
        build_classic_units("smtp inet n - y - - smtpd\n", {"multi_instance_name": "postfix-.."})


def test_the_module_refuses_the_primary_as_a_named_instance() -> None:
    with pytest.raises(_postfix_instances.InstanceError, match="primary"):
        _postfix_instances.validate_name("-")


@pytest.mark.parametrize("short", [".", "..", "", "-x", "a/b", "a\n", "a b", "é", "x" * (INSTANCE_SHORT_MAX + 1)])
def test_short_names_of_the_generator(short: str) -> None:
    with pytest.raises(InstanceNameError):
        short_instance_name(short)


@pytest.mark.parametrize("conf_name", ["..conf", "...conf", "-x.conf", "a b.conf", "é.conf"])
def test_generator_skips_a_conf_whose_name_is_no_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], conf_name: str
) -> None:
    """/etc/mailfleet-postfix/instances/..conf would make RUN_DIR/./units.set and RUN_DIR/../units.set."""
    conf = tmp_path / "instances"
    conf.mkdir()
    (conf / conf_name).write_text(f"config_directory = {tmp_path}\n")
    (conf / "good.conf").write_text(f"config_directory = {tmp_path}\n")
    got = _masterless_generator.enabled_instances(str(conf))
    assert [name for name, _unused in got] == ["good"]
    assert "cannot name the instance's paths and units" in capsys.readouterr().err


def test_role_preflight_agrees_with_the_library() -> None:
    """roles/instance checks the name before any change through the instance_units filter: same verdicts."""
    import yaml  # type: ignore[import-untyped]

    from ansible_collections.mailfleet.postfix.plugins.filter.fleet_topology import instance_units

    root = Path(__file__).resolve().parents[4]
    tasks = yaml.safe_load((root / "roles" / "instance" / "tasks" / "preflight.yml").read_text())
    that = " ".join(tasks[0]["ansible.builtin.assert"]["that"][0].split())
    assert that == "__postfix_instance_units.error | length == 0"
    role_vars = yaml.safe_load((root / "roles" / "instance" / "vars" / "main.yml").read_text())
    assert role_vars["__postfix_instance_units"] == "{{ postfix_instance_name | mailfleet.postfix.instance_units }}"

    def role_accepts(name: str) -> bool:
        return not instance_units(name)["error"]

    for name in [*VALID, *INVALID]:
        try:
            instance_name(name)
            library = True
        except InstanceNameError:
            library = False
        assert role_accepts(name) == library, ascii(name)
