"""RAM through the official SDKs: the root creates a user, a policy that allows exactly one instance
and one key pair, and an AccessKey; the user's calls in both ECS dialects do exactly what the
policy allows, everything else gets the vendor's refusal, and the audit log shows each call."""

import json

import pytest
import volcenginesdkecs as ve
from alibabacloud_ecs20140526 import models as m
from alibabacloud_ram20150501 import models as rm
from alibabacloud_ram20150501.client import Client as RamClient
from alibabacloud_tea_openapi import utils_models as om

from conftest import AK, CA, LINUX, SCHEME, SK, tea_client
from helpers import admin, ids_json, sdk_error, ssh_keygen
from volc_helpers import api_error, volc

R = "cn-hangzhou"


def ram(server, ak=AK, sk=SK):
    return RamClient(om.Config(access_key_id=ak, access_key_secret=sk, endpoint=server.endpoint, protocol=SCHEME, ca=CA))


@pytest.fixture
def world(server):
    """Two instances and two key pairs; a user allowed exactly one of each."""
    root = tea_client(server)
    a, b = root.run_instances(m.RunInstancesRequest(region_id=R, image_id=LINUX, instance_type="t", amount=2)).body.instance_id_sets.instance_id_set
    for name in ["kp-ok", "kp-no"]:
        _, line = ssh_keygen()
        root.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name=name, public_key_body=line))
    r = ram(server)
    r.create_user(rm.CreateUserRequest(user_name="alice", display_name="Alice"))
    doc = {"Version": "1", "Statement": [{"Effect": "Allow",
           "Action": ["ecs:AttachKeyPair", "ecs:DetachKeyPair", "ecs:Describe*", "ecs:RebootInstance"],
           "Resource": [f"acs:ecs:*:*:instance/{a}", "acs:ecs:*:*:keypair/kp-ok"]}]}
    r.create_policy(rm.CreatePolicyRequest(policy_name="one-of-each", policy_document=json.dumps(doc), description="exactly A and kp-ok"))
    r.attach_policy_to_user(rm.AttachPolicyToUserRequest(policy_type="Custom", policy_name="one-of-each", user_name="alice"))
    key = r.create_access_key(rm.CreateAccessKeyRequest(user_name="alice")).body.access_key
    assert key.access_key_secret not in server.log(), "an AccessKey secret is never logged"
    return {"a": a, "b": b, "ak": key.access_key_id, "sk": key.access_key_secret, "ram": r, "root": root}


def test_the_user_does_exactly_what_the_policy_allows_in_the_alibaba_dialect(server, world):
    alice = tea_client(server, ak=world["ak"], sk=world["sk"])
    a, b = world["a"], world["b"]
    out = alice.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="kp-ok", instance_ids=ids_json([a, b]))).body
    codes = {x.instance_id: x.code for x in out.results.result}
    assert codes == {a: "200", b: "Forbidden.RAM"} and out.fail_count == "1"
    assert sdk_error(lambda: alice.attach_key_pair(m.AttachKeyPairRequest(
        region_id=R, key_pair_name="kp-no", instance_ids=ids_json([a])))) == (403, "Forbidden.RAM")
    kps = alice.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R)).body
    assert [k.key_pair_name for k in kps.key_pairs.key_pair] == ["kp-ok"] and kps.total_count == 1
    inst = alice.describe_instances(m.DescribeInstancesRequest(region_id=R)).body
    assert [i.instance_id for i in inst.instances.instance] == [a]
    alice.reboot_instance(m.RebootInstanceRequest(instance_id=a))
    assert sdk_error(lambda: alice.reboot_instance(m.RebootInstanceRequest(instance_id=b))) == (403, "Forbidden.RAM")
    assert sdk_error(lambda: alice.delete_key_pairs(m.DeleteKeyPairsRequest(region_id=R, key_pair_names='["kp-ok"]'))) == (403, "Forbidden.RAM")
    assert sdk_error(lambda: alice.run_instances(m.RunInstancesRequest(region_id=R, image_id=LINUX, instance_type="t"))) == (403, "Forbidden.RAM")
    # The root still sees both, and B was not touched.
    root = world["root"]
    bound = root.describe_instances(m.DescribeInstancesRequest(region_id=R, key_pair_name="kp-ok")).body
    assert [i.instance_id for i in bound.instances.instance] == [a]


def test_the_same_policy_governs_the_volcengine_dialect(server, world):
    alice = volc(server, region=R, ak=world["ak"], sk=world["sk"])
    a, b = world["a"], world["b"]
    out = alice.attach_key_pair(ve.AttachKeyPairRequest(key_pair_name="kp-ok", instance_ids=[a, b]))
    errs = {d.instance_id: (d.error.code if d.error else None) for d in out.operation_details}
    assert errs == {a: None, b: "AccessDenied"}
    assert api_error(lambda: alice.attach_key_pair(ve.AttachKeyPairRequest(key_pair_name="kp-no", instance_ids=[a]))) == (403, "AccessDenied")
    assert [k.key_pair_name for k in alice.describe_key_pairs(ve.DescribeKeyPairsRequest()).key_pairs] == ["kp-ok"]
    assert [i.instance_id for i in alice.describe_instances(ve.DescribeInstancesRequest()).instances] == [a]
    assert api_error(lambda: alice.stop_instance(ve.StopInstanceRequest(instance_id=b))) == (403, "AccessDenied")


def test_a_user_cannot_grant_itself_permissions(server, world):
    alice_ram = ram(server, world["ak"], world["sk"])
    admin = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    assert sdk_error(lambda: alice_ram.create_policy(rm.CreatePolicyRequest(policy_name="all", policy_document=admin))) == (403, "Forbidden.RAM")
    assert sdk_error(lambda: alice_ram.attach_policy_to_user(rm.AttachPolicyToUserRequest(
        policy_type="Custom", policy_name="one-of-each", user_name="alice"))) == (403, "Forbidden.RAM")
    assert sdk_error(lambda: alice_ram.create_access_key(rm.CreateAccessKeyRequest())) == (403, "Forbidden.RAM")


def test_disabled_and_deleted_keys_stop_working(server, world):
    r, ak, sk = world["ram"], world["ak"], world["sk"]
    alice = tea_client(server, ak=ak, sk=sk)
    # A call first: on SQLite the server now holds the key in memory, and the change must still win.
    assert alice.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R)).body.total_count == 1
    r.update_access_key(rm.UpdateAccessKeyRequest(user_name="alice", user_access_key_id=ak, status="Inactive"))
    assert sdk_error(lambda: alice.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R))) == (403, "Forbidden.AccessKeyDisabled")
    assert api_error(lambda: volc(server, region=R, ak=ak, sk=sk).describe_key_pairs(ve.DescribeKeyPairsRequest())) == (403, "AccessDenied")
    r.update_access_key(rm.UpdateAccessKeyRequest(user_name="alice", user_access_key_id=ak, status="Active"))
    assert alice.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R)).body.total_count == 1
    keys = r.list_access_keys(rm.ListAccessKeysRequest(user_name="alice")).body.access_keys.access_key
    assert [(k.access_key_id, k.status) for k in keys] == [(ak, "Active")]
    r.create_access_key(rm.CreateAccessKeyRequest(user_name="alice"))
    assert sdk_error(lambda: r.create_access_key(rm.CreateAccessKeyRequest(user_name="alice"))) == (409, "LimitExceeded.User.AccessKey")
    r.delete_access_key(rm.DeleteAccessKeyRequest(user_name="alice", user_access_key_id=ak))
    # A signature made with the deleted secret.
    assert sdk_error(lambda: alice.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R))) == (404, "InvalidAccessKeyId.NotFound")


def test_the_ram_api_shapes_and_errors(server, world):
    r = world["ram"]
    user = r.get_user(rm.GetUserRequest(user_name="alice")).body.user
    assert (user.user_name, user.display_name) == ("alice", "Alice") and len(user.user_id) == 16
    assert [u.user_name for u in r.list_users(rm.ListUsersRequest()).body.users.user] == ["alice"]
    assert sdk_error(lambda: r.create_user(rm.CreateUserRequest(user_name="alice"))) == (409, "EntityAlreadyExists.User")
    assert sdk_error(lambda: r.get_user(rm.GetUserRequest(user_name="nobody"))) == (404, "EntityNotExist.User")
    assert sdk_error(lambda: r.create_user(rm.CreateUserRequest(user_name="bad name; DROP TABLE users"))) == (400, "InvalidParameter.UserName.InvalidChars")
    p = r.get_policy(rm.GetPolicyRequest(policy_name="one-of-each", policy_type="Custom")).body
    assert p.policy.attachment_count == 1 and json.loads(p.default_policy_version.policy_document)["Version"] == "1"
    assert [x.policy_name for x in r.list_policies_for_user(rm.ListPoliciesForUserRequest(user_name="alice")).body.policies.policy] == ["one-of-each"]
    assert [x.policy_name for x in r.list_policies(rm.ListPoliciesRequest()).body.policies.policy] == ["one-of-each"]
    for bad in ['{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Extra":1}]}',
                '{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"arn:x"}]}',
                '{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*","Condition":{"IpAddress":{"acs:Nope":"1.2.3.4"}}}]}']:
        assert sdk_error(lambda: r.create_policy(rm.CreatePolicyRequest(policy_name="bad", policy_document=bad))) == (400, "MalformedPolicyDocument")
    assert sdk_error(lambda: r.delete_user(rm.DeleteUserRequest(user_name="alice"))) == (409, "DeleteConflict.User.AccessKey")
    assert sdk_error(lambda: r.delete_policy(rm.DeletePolicyRequest(policy_name="one-of-each"))) == (409, "DeleteConflict.Policy.User")
    r.create_login_profile(rm.CreateLoginProfileRequest(user_name="alice", password="Passw0rd!x"))
    assert sdk_error(lambda: r.create_login_profile(rm.CreateLoginProfileRequest(user_name="alice", password="short"))) == (400, "InvalidParameter.Password")
    r.detach_policy_from_user(rm.DetachPolicyFromUserRequest(policy_type="Custom", policy_name="one-of-each", user_name="alice"))
    r.delete_policy(rm.DeletePolicyRequest(policy_name="one-of-each"))
    for k in r.list_access_keys(rm.ListAccessKeysRequest(user_name="alice")).body.access_keys.access_key:
        r.delete_access_key(rm.DeleteAccessKeyRequest(user_name="alice", user_access_key_id=k.access_key_id))
    r.delete_user(rm.DeleteUserRequest(user_name="alice"))
    assert r.list_users(rm.ListUsersRequest()).body.users.user == []


def test_the_audit_log_shows_each_call(server, world):
    alice = tea_client(server, ak=world["ak"], sk=world["sk"])
    alice.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="kp-ok", instance_ids=ids_json([world["a"]])))
    sdk_error(lambda: alice.delete_key_pairs(m.DeleteKeyPairsRequest(region_id=R, key_pair_names='["kp-no"]')))
    server.stop()
    rows = server.query("SELECT principal, access_key_id, source_ip, action, result, resources, request_id FROM audit ORDER BY seq")
    mine = [r for r in rows if r[0] == "user/alice"]
    assert [(r[3], r[4]) for r in mine] == [("AttachKeyPair", "OK"), ("DeleteKeyPairs", "Forbidden.RAM")]
    assert all(r[1] == world["ak"] and r[2] == "127.0.0.1" and r[6] for r in mine)
    assert any("keypair/kp-ok" in r[5] for r in mine)
    root_actions = {r[3] for r in rows if r[0] == "root"}
    assert {"CreateUser", "CreatePolicy", "AttachPolicyToUser", "CreateAccessKey", "RunInstances", "ImportKeyPair"} <= root_actions
    assert not any(r[3] == "DescribeKeyPairs" for r in rows), "reads are not audited unless denied"


def test_refusals_inside_a_batch_are_audited_per_instance(server, world):
    """A batch that answers 200 with one instance refused, and a batch refused for every instance,
    are both found by `keyplane admin audit --result` with the code each dialect answered."""
    a, b = world["a"], world["b"]
    alice = tea_client(server, ak=world["ak"], sk=world["sk"])
    alice.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="kp-ok", instance_ids=ids_json([a, b])))
    alice.detach_key_pair(m.DetachKeyPairRequest(region_id=R, key_pair_name="kp-ok", instance_ids=ids_json([b])))
    out = volc(server, region=R, ak=world["ak"], sk=world["sk"]).attach_key_pair(
        ve.AttachKeyPairRequest(key_pair_name="kp-ok", instance_ids=[b]))
    assert [d.error.code for d in out.operation_details] == ["AccessDenied"]

    def listed(code):
        out = admin(server, "audit", "--result", code)
        assert out.returncode == 0, out.stderr
        return [(r["Dialect"], r["Action"], r["Result"], [(x["InstanceId"], x["Result"]) for x in r["InstanceResults"]])
                for r in json.loads(out.stdout)["Records"]]

    partial = ("aliyun", "AttachKeyPair", "OK", [(a, "OK"), (b, "Forbidden.RAM")])
    all_refused = ("aliyun", "DetachKeyPair", "OK", [(b, "Forbidden.RAM")])
    volc_refused = ("volc", "AttachKeyPair", "OK", [(b, "AccessDenied")])
    assert sorted(listed("Forbidden.RAM")) == sorted([partial, all_refused])
    assert listed("AccessDenied") == [volc_refused]
    assert partial in listed("OK")
    assert listed("Forbidden") == [], "a result filter matches whole codes only"


def test_an_oversized_policy_document_is_refused(server):
    r = ram(server)
    # Through the SDK (query string), above the 6,144-byte policy limit.
    mid = json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "ecs:*", "Resource": ["acs:ecs:*:*:instance/" + "a" * 7000]}]})
    assert sdk_error(lambda: r.create_policy(rm.CreatePolicyRequest(policy_name="mid", policy_document=mid))) == (400, "MalformedPolicyDocument")
    # A 1 MB document in a form body (V1-signed like pop-core): refused before or by the policy rules.
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import CommonRequest
    c = AcsClient(AK, SK, "cn-hangzhou", verify=CA)
    req = CommonRequest(domain=server.endpoint, version="2015-05-01", action_name="CreatePolicy")
    req.set_method("POST")
    req.set_protocol_type(SCHEME)
    req.add_body_params("PolicyName", "huge")
    req.add_body_params("PolicyDocument", json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "ecs:*", "Resource": ["acs:ecs:*:*:instance/" + "a" * 1_000_000]}]}))
    status, code = sdk_error(lambda: c.do_action_with_exception(req))
    assert (status, code) == (400, "MalformedPolicyDocument")
    assert r.list_policies(rm.ListPoliciesRequest()).body.policies.policy == [], "nothing was created"
