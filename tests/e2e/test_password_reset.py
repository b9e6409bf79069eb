"""Password reset on simulated instances through the official SDKs (SPEC section 3, "Password
reset"): ModifyInstanceAttribute in both dialects and RunInstances Password, the vendor rules and
errors, the statuses a reset needs, the restart rule, and nothing changed by a refused call."""

import json
import time

import volcenginesdkecs as ve
from alibabacloud_ecs20140526 import models as m

from conftest import LINUX, REGION, WINDOWS, Server, tea_client
from helpers import ids_json, sdk_error, ssh_keygen
from test_agent import admin
from volc_helpers import api_error, volc

GOOD = "Reset-Pw-2026"


def run(tea, image=LINUX, **kw):
    r = tea.run_instances(m.RunInstancesRequest(region_id=REGION, image_id=image, instance_type="ecs.g7.large",
                                                amount=1, **kw))
    return r.body.instance_id_sets.instance_id_set[0]


def native(server, iid):
    return admin(server, "instances", "--instance", iid)["Instances"][0]


def test_a_reset_after_a_binding_waits_for_the_restart_then_key_and_password_both_hold(server):
    tea = tea_client(server)
    _, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name="reset-key", public_key_body=line))
    iid = run(tea)
    tea.attach_key_pair(m.AttachKeyPairRequest(region_id=REGION, key_pair_name="reset-key", instance_ids=ids_json([iid])))
    tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
    assert (native(server, iid)["BindingState"], native(server, iid)["PasswordLogin"]) == ("applied", False)

    tea.modify_instance_attribute(m.ModifyInstanceAttributeRequest(instance_id=iid, password=GOOD,
                                                                   instance_name="web-1", host_name="web-1"))
    pending = native(server, iid)
    assert (pending["BindingState"], pending["PasswordLogin"], pending["PasswordResetPending"]) == \
        ("pending_restart", False, True)
    inst = tea.describe_instances(m.DescribeInstancesRequest(region_id=REGION, instance_ids=ids_json([iid])))
    inst = inst.body.instances.instance[0]
    assert (inst.instance_name, inst.host_name, inst.key_pair_name) == ("web-1", "web-1", "reset-key")

    tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
    after = native(server, iid)
    assert (after["BindingState"], after["PasswordLogin"]) == ("applied", True), after
    assert after["KeyPairName"] == "reset-key"


def test_bad_input_gets_the_vendor_error_in_both_sdks_and_changes_nothing(server):
    tea = tea_client(server)
    v = volc(server, region=REGION)
    iid = run(tea)
    before = native(server, iid)
    for pw in ["Ab1!xyz", "Ab1!" * 8, "abcdefgh1234", "Abc 1234!x", "Abc\\1234!x", "Pässwort-123"]:
        status, code = sdk_error(lambda: tea.modify_instance_attribute(
            m.ModifyInstanceAttributeRequest(instance_id=iid, password=pw)))
        assert (status, code) == (400, "InvalidPassword.Malformed"), pw
        status, code = api_error(lambda: v.modify_instance_attribute(
            ve.ModifyInstanceAttributeRequest(instance_id=iid, password=pw)))
        assert (status, code) == (400, "InvalidPassword.Malformed"), pw
    status, code = api_error(lambda: v.modify_instance_attribute(
        ve.ModifyInstanceAttributeRequest(instance_id=iid, password="/Starts-With-Slash1")))
    assert code == "InvalidPassword.Malformed"
    status, code = sdk_error(lambda: tea.run_instances(m.RunInstancesRequest(
        region_id=REGION, image_id=LINUX, instance_type="ecs.g7.large", password="short")))
    assert (status, code) == (400, "InvalidPassword.Malformed")
    assert native(server, iid) == before, "nothing changed"
    assert len(tea.describe_instances(m.DescribeInstancesRequest(region_id=REGION)).body.instances.instance) == 1


def test_windows_resets_and_transitional_statuses_are_refused():
    server = Server(env_extra={"KEYPLANE_TRANSITION_DELAY_MS": "1500"})
    try:
        tea = tea_client(server)
        win = run(tea, image=WINDOWS)
        status, code = sdk_error(lambda: tea.modify_instance_attribute(
            m.ModifyInstanceAttributeRequest(instance_id=win, password=GOOD)))
        assert (status, code) == (403, "IncorrectInstanceStatus"), "Pending: a transitional status"
        status, code = api_error(lambda: volc(server, region=REGION).modify_instance_attribute(
            ve.ModifyInstanceAttributeRequest(instance_id=win, password=GOOD)))
        assert code == "InvalidInstanceStatus"
        for _ in range(50):
            if native(server, win)["Status"] == "Running":
                break
            time.sleep(0.1)
        status, code = sdk_error(lambda: tea.modify_instance_attribute(
            m.ModifyInstanceAttributeRequest(instance_id=win, password="/Starts-With-Slash1")))
        assert code == "InvalidPassword.Malformed", "a Windows password may not start with /"
        tea.modify_instance_attribute(m.ModifyInstanceAttributeRequest(instance_id=win, password=GOOD))
        assert native(server, win)["BindingState"] == "pending_restart"
        rows = server.query(f"SELECT login_user, password_hash FROM instances WHERE id = '{win}'")
        assert rows[0][0] == "Administrator" and rows[0][1].startswith("$6$")
    finally:
        server.stop()


def test_run_instances_password_and_the_store_keeps_only_hashes(server):
    tea = tea_client(server)
    secret = "Initial-Pw-4821"
    iid = run(tea, password=secret)
    v = volc(server, region=REGION)
    v.modify_instance_attribute(ve.ModifyInstanceAttributeRequest(instance_id=iid, password="Volc-Reset-77",
                                                                  instance_name="renamed"))
    v.reboot_instance(ve.RebootInstanceRequest(instance_id=iid))
    assert native(server, iid)["BindingState"] == "applied"
    for text in (server.dump(), server.log().encode(),
                 json.dumps(admin(server, "audit", "--action", "ModifyInstanceAttribute")).encode()):
        assert secret.encode() not in text and b"Volc-Reset-77" not in text
