"""Several accounts on one server, administered with `keyplane admin`; each sees only its own
resources in both dialects; the audit log is listed by the CLI; throttling changes nothing."""

import json

import volcenginesdkecs as ve
from alibabacloud_ecs20140526 import models as m

from conftest import LINUX, Server, tea_client
from helpers import admin, ids_json, sdk_error, ssh_keygen
from volc_helpers import volc

R = "cn-hangzhou"


def test_accounts_are_created_by_the_bootstrap_root_and_see_only_their_own(server):
    out = admin(server, "account", "create", "team-b")
    assert out.returncode == 0, out.stderr
    b = json.loads(out.stdout)
    assert set(b) == {"AccountId", "AccessKeyId", "AccessKeySecret"} and len(b["AccountId"]) == 16
    listed = json.loads(admin(server, "account", "list").stdout)["Accounts"]
    assert [a["Name"] for a in listed] == ["default", "team-b"]
    refused = admin(server, "account", "create", "team-c", ak=b["AccessKeyId"], sk=b["AccessKeySecret"])
    assert refused.returncode != 0 and "Forbidden.RAM" in refused.stderr

    root_a = tea_client(server)
    inst_a = root_a.run_instances(m.RunInstancesRequest(region_id=R, image_id=LINUX, instance_type="t")).body.instance_id_sets.instance_id_set[0]
    _, line = ssh_keygen()
    root_a.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="shared-name", public_key_body=line))
    root_b = tea_client(server, ak=b["AccessKeyId"], sk=b["AccessKeySecret"])
    assert root_b.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R)).body.total_count == 0
    assert root_b.describe_instances(m.DescribeInstancesRequest(region_id=R)).body.total_count == 0
    root_b.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="shared-name", public_key_body=line))
    r = root_b.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="shared-name", instance_ids=ids_json([inst_a]))).body
    assert r.results.result[0].code == "InvalidInstanceId.NotFound", "another account's instance is as unknown as a made-up one"
    assert sdk_error(lambda: root_b.stop_instance(m.StopInstanceRequest(instance_id=inst_a))) == (404, "InvalidInstanceId.NotFound")
    vb = volc(server, region=R, ak=b["AccessKeyId"], sk=b["AccessKeySecret"])
    out = vb.attach_key_pair(ve.AttachKeyPairRequest(key_pair_name="shared-name", instance_ids=[inst_a]))
    assert out.operation_details[0].error.code == "InvalidInstance.NotFound"
    assert vb.describe_instances(ve.DescribeInstancesRequest()).total_count == 0
    a_bound = root_a.describe_instances(m.DescribeInstancesRequest(region_id=R, key_pair_name="shared-name")).body
    assert a_bound.total_count == 0, "nothing of account A changed"

    audit = json.loads(admin(server, "audit", "--action", "ImportKeyPair").stdout)
    assert audit["TotalCount"] == 1 and audit["Records"][0]["Principal"] == "root"
    audit_b = json.loads(admin(server, "audit", "--account", b["AccountId"], "--action", "AttachKeyPair").stdout)
    assert [(r["Dialect"], r["Result"]) for r in audit_b["Records"]] == [("aliyun", "OK"), ("volc", "OK")]
    assert audit_b["Records"][0]["SourceIp"] == "127.0.0.1"
    nosy = admin(server, "audit", "--account", listed[0]["AccountId"], ak=b["AccessKeyId"], sk=b["AccessKeySecret"])
    assert nosy.returncode != 0 and "Forbidden.RAM" in nosy.stderr


def test_a_throttled_call_is_refused_with_a_retry_hint_and_changes_nothing():
    s = Server(env_extra={"KEYPLANE_THROTTLE_PER_SECOND": "1", "KEYPLANE_THROTTLE_BURST": "1"})
    try:
        c = tea_client(s)
        _, line = ssh_keygen()
        c.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="first", public_key_body=line))
        status, code = sdk_error(lambda: c.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="second", public_key_body=line)))
        assert (status, code) == (400, "Throttling")
        import time
        time.sleep(1.1)
        names = [k.key_pair_name for k in c.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R)).body.key_pairs.key_pair]
        assert names == ["first"]
        audit = json.loads(admin(s, "audit", "--result", "Throttling").stdout)
        assert [r["Action"] for r in audit["Records"]] == ["ImportKeyPair"]
    finally:
        s.stop()


def register(server, token, login_user="root"):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"{server.url}/agent/v1/register", method="POST",
                                 data=json.dumps({"Token": token, "LoginUser": login_user}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_registration_tokens_expire_are_listed_without_secrets_and_revoked(server):
    """SPEC section 7: create answers the token, its ID and expiry; list never shows a token;
    revoke stops it at once, and a revoked token is refused like one that never existed."""
    out = admin(server, "registration-token", "create", "--region", R, "--zone", "cn-hangzhou-h", "--name", "web-9", "--ttl", "8h")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert set(created) == {"Token", "TokenId", "ExpiresAt"} and created["TokenId"].startswith("rt-")
    default = json.loads(admin(server, "registration-token", "create", "--region", R).stdout)

    listed = admin(server, "registration-token", "list")
    assert listed.returncode == 0, listed.stderr
    tokens = json.loads(listed.stdout)["Tokens"]
    assert tokens == [
        {"TokenId": created["TokenId"], "Name": "web-9", "ExpiresAt": created["ExpiresAt"], "Used": False},
        {"TokenId": default["TokenId"], "Name": "", "ExpiresAt": default["ExpiresAt"], "Used": False},
    ]
    assert "kprt-" not in listed.stdout

    bad = admin(server, "registration-token", "create", "--region", R, "--ttl", "31d")
    assert bad.returncode != 0 and "InvalidParameter" in bad.stderr and "30 days" in bad.stderr

    assert register(server, created["Token"], "..")[0] == 400
    status, reg = register(server, created["Token"])
    assert status == 200, reg
    revoked = admin(server, "registration-token", "revoke", default["TokenId"])
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) == {"TokenId": default["TokenId"]}
    unknown = register(server, "kprt-never-issued")
    dead = register(server, default["Token"])
    assert dead[0] == unknown[0] == 403 and dead[1]["Message"] == unknown[1]["Message"]
    tokens = json.loads(admin(server, "registration-token", "list").stdout)["Tokens"]
    assert [(t["TokenId"], t["Used"]) for t in tokens] == [(created["TokenId"], True)]
    again = admin(server, "registration-token", "revoke", default["TokenId"])
    assert again.returncode != 0 and "InvalidParameter" in again.stderr
