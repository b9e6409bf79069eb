"""The Terraform providers' call flows for key pairs (issue 17), replayed with the official SDKs:
exactly the actions, parameters and error handling of terraform-provider-alicloud's
`alicloud_ecs_key_pair_attachment` and `alicloud_ecs_key_pair`, and of
terraform-provider-volcengine's `volcengine_ecs_key_pair_associate` and `volcengine_ecs_key_pair`
(docs/EMULATOR.md walks through each).

One emulator serves the whole module: the fixture saves a snapshot of its empty state once and
loads it before every test, the pattern docs/EMULATOR.md recommends."""

import json

import time

import pytest
from alibabacloud_ecs20140526 import models as m

from conftest import LINUX, POSTGRES, REGION, Server, tea_client
from helpers import admin, ids_json, ssh_keygen
from volc_helpers import raw

VOLC_REGION = "cn-beijing"


def start():
    # Transitions take a moment, so the providers' polling until Running really polls.
    return Server(env_extra={"KEYPLANE_EMULATOR": "1", "KEYPLANE_TRANSITION_DELAY_MS": "400"})


@pytest.fixture(scope="module")
def emulator():
    if POSTGRES:  # snapshots are SQLite's: on PostgreSQL each test gets a server of its own
        yield None
        return
    s = start()
    assert admin(s, "snapshot", "save", "clean").returncode == 0
    yield s
    s.proc.terminate()
    s.proc.wait(15)


@pytest.fixture
def emu(emulator):
    """The module's emulator, loaded from its clean snapshot: each test starts from nothing."""
    if emulator is None:
        s = start()
        yield s
        s.proc.terminate()
        s.proc.wait(15)
        return
    out = admin(emulator, "snapshot", "load", "clean")
    assert out.returncode == 0, out.stderr
    assert admin(emulator, "fault", "clear").returncode == 0
    yield emulator


def rpc(tea, action, params, method="POST"):
    """An RPC call as the provider's `client.RpcPost`/`conn.DoRequest` sends it: Tea's generic
    `call_api`, parameters in the form body (RpcGet: in the query), version 2014-05-26."""
    from alibabacloud_tea_openapi import models as om
    from alibabacloud_tea_util import models as um
    p = om.Params(action=action, version="2014-05-26", protocol="HTTPS", pathname="/", method=method,
                  auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    params = {k: v for k, v in params.items() if v is not None}
    req = om.OpenApiRequest(body=params) if method == "POST" else om.OpenApiRequest(query=params)
    return tea.call_api(p, req, um.RuntimeOptions())["body"]


def code_of(fn):
    try:
        fn()
    except Exception as e:
        return e.code
    raise AssertionError("expected an error")


def run(tea, n):
    body = rpc(tea, "RunInstances", {"RegionId": REGION, "ImageId": LINUX, "InstanceType": "ecs.g7.large",
                                     "Amount": n})
    return body["InstanceIdSets"]["InstanceIdSet"]


def wait_running(tea, iid):
    """The provider's WaitForEcsInstance: DescribeInstances of the one instance until Running."""
    for _ in range(100):
        body = rpc(tea, "DescribeInstances", {"RegionId": REGION, "InstanceIds": json.dumps([iid])})
        if body["Instances"]["Instance"][0]["Status"] == "Running":
            return
        time.sleep(0.1)
    raise AssertionError(f"{iid} never reached Running")


def bound_by_name(tea, name, ids):
    """The issue's read: DescribeInstances with KeyPairName, InstanceIds and MaxResults, following
    NextToken to the end."""
    seen, token = [], None
    while True:
        body = rpc(tea, "DescribeInstances", {"RegionId": REGION, "KeyPairName": name,
                                              "InstanceIds": json.dumps(ids), "MaxResults": 2,
                                              "NextToken": token})
        seen += [i["InstanceId"] for i in body["Instances"]["Instance"]]
        token = body.get("NextToken")
        if not token:
            return seen


def query_instances_with_key_pair(tea, name, ids):
    """The provider's QueryInstancesWithKeyPair: PageNumber/PageSize=50 with its loop quirk, which
    asks for page 2 whenever page 1 has any instance (so the page past the end must be empty)."""
    seen, page = [], 1
    while True:
        body = rpc(tea, "DescribeInstances", {"RegionId": REGION, "PageSize": 50, "PageNumber": page,
                                              "InstanceIds": json.dumps(ids) if ids else "",
                                              "KeyPairName": name})
        v = body["Instances"]["Instance"]
        seen += [i["InstanceId"] for i in v]
        if len(v) < page:
            return seen
        page += 1


def test_alicloud_key_pair_attachment_with_force(emu):
    tea = tea_client(emu)
    ids = run(tea, 5)
    for iid in ids:
        wait_running(tea, iid)
    _, line = ssh_keygen()
    rpc(tea, "ImportKeyPair", {"RegionId": REGION, "KeyPairName": "tf-kp", "PublicKeyBody": line})
    # Create, force = true: the instances not yet bound, then AttachKeyPair (InstanceIds a JSON
    # array string), then RebootInstance(ForceStop=true) on each and the wait for Running.
    assert query_instances_with_key_pair(tea, "tf-kp", []) == []
    rpc(tea, "AttachKeyPair", {"RegionId": REGION, "KeyPairName": "tf-kp", "InstanceIds": json.dumps(ids)})
    # The read sees the binding at once, before any reboot.
    assert sorted(bound_by_name(tea, "tf-kp", ids)) == sorted(ids)
    assert sorted(query_instances_with_key_pair(tea, "tf-kp", ids)) == sorted(ids)
    for iid in ids:
        rpc(tea, "RebootInstance", {"RegionId": REGION, "InstanceId": iid, "ForceStop": "true"}, method="GET")
    for iid in ids:
        wait_running(tea, iid)
    # The attachment resource's read: DescribeKeyPairs by name.
    kp = rpc(tea, "DescribeKeyPairs", {"RegionId": REGION, "KeyPairName": "tf-kp"})["KeyPairs"]["KeyPair"]
    assert [k["KeyPairName"] for k in kp] == ["tf-kp"]
    # Delete: DetachKeyPair, then the re-query by KeyPairName and InstanceIds finds none.
    rpc(tea, "DetachKeyPair", {"RegionId": REGION, "KeyPairName": "tf-kp", "InstanceIds": json.dumps(ids)})
    assert query_instances_with_key_pair(tea, "tf-kp", ids) == []
    assert bound_by_name(tea, "tf-kp", ids) == []


def test_alicloud_attachment_delete_not_found_and_delete_key_pairs_retry(emu):
    tea = tea_client(emu)
    ids = run(tea, 2)
    for iid in ids:
        wait_running(tea, iid)
    _, line = ssh_keygen()
    rpc(tea, "ImportKeyPair", {"RegionId": REGION, "KeyPairName": "tf-del", "PublicKeyBody": line})
    rpc(tea, "AttachKeyPair", {"RegionId": REGION, "KeyPairName": "tf-del", "InstanceIds": json.dumps(ids)})
    names = json.dumps(["tf-del"])
    # DeleteKeyPairs while attached: the code the provider retries on.
    assert code_of(lambda: rpc(tea, "DeleteKeyPairs", {"RegionId": REGION, "KeyPairNames": names})) == \
        "InvalidParameter.KeypairAlreadyAttachedInstance"
    rpc(tea, "DetachKeyPair", {"RegionId": REGION, "KeyPairName": "tf-del", "InstanceIds": json.dumps(ids)})
    rpc(tea, "DeleteKeyPairs", {"RegionId": REGION, "KeyPairNames": names})  # the retry succeeds
    # A DetachKeyPair of a key pair that is gone: the not-found code the provider counts as done.
    assert code_of(lambda: rpc(tea, "DetachKeyPair", {"RegionId": REGION, "KeyPairName": "tf-del",
                                                      "InstanceIds": json.dumps(ids)})) == "InvalidKeyPairName.NotFound"
    # An injected throttle on the retry path of NeedRetry (`^Throttling.*`) answers as the
    # vendor would and then lets the call through.
    admin(emu, "fault", "add", "--action", "DescribeKeyPairs", "--code", "Throttling.User", "--count", "1")
    assert code_of(lambda: rpc(tea, "DescribeKeyPairs", {"RegionId": REGION})) == "Throttling.User"
    assert rpc(tea, "DescribeKeyPairs", {"RegionId": REGION})["TotalCount"] == 0


def test_alicloud_ecs_key_pair_resource(emu):
    tea = tea_client(emu)
    tags = {"Tag.1.Key": "team", "Tag.1.Value": "infra", "Tag.2.Key": "env", "Tag.2.Value": "ci"}
    created = rpc(tea, "CreateKeyPair", {"RegionId": REGION, "KeyPairName": "tf-created",
                                         "ResourceGroupId": "rg-aek2creat", **tags})
    assert created["KeyPairName"] == "tf-created" and "PRIVATE KEY" in created["PrivateKeyBody"]
    _, line = ssh_keygen()
    rpc(tea, "ImportKeyPair", {"RegionId": REGION, "KeyPairName": "tf-imported", "PublicKeyBody": line,
                               "ResourceGroupId": "rg-aek2impor", "Tag.1.Key": "team", "Tag.1.Value": "infra"})

    def read(name):
        kps = rpc(tea, "DescribeKeyPairs", {"RegionId": REGION, "KeyPairName": name})["KeyPairs"]["KeyPair"]
        assert len(kps) == 1
        k = kps[0]
        assert k["KeyPairFingerPrint"] and k["CreationTime"]
        return k["ResourceGroupId"], {t["TagKey"]: t["TagValue"] for t in k["Tags"]["Tag"]}

    assert read("tf-created") == ("rg-aek2creat", {"team": "infra", "env": "ci"})
    assert read("tf-imported") == ("rg-aek2impor", {"team": "infra"})
    # Update: JoinResourceGroup, then UntagResources / TagResources (ResourceType=keypair).
    rpc(tea, "JoinResourceGroup", {"RegionId": REGION, "ResourceId": "tf-created", "ResourceGroupId": "rg-aek2moved",
                                   "ResourceType": "keypair"})
    rpc(tea, "UntagResources", {"RegionId": REGION, "ResourceType": "keypair", "ResourceId.1": "tf-created",
                                "TagKey.1": "env"})
    rpc(tea, "TagResources", {"RegionId": REGION, "ResourceType": "keypair", "ResourceId.1": "tf-created",
                              "Tag.1.Key": "owner", "Tag.1.Value": "sre"})
    assert read("tf-created") == ("rg-aek2moved", {"team": "infra", "owner": "sre"})
    by_group = rpc(tea, "DescribeKeyPairs", {"RegionId": REGION, "ResourceGroupId": "rg-aek2moved"})
    assert [k["KeyPairName"] for k in by_group["KeyPairs"]["KeyPair"]] == ["tf-created"]
    assert code_of(lambda: rpc(tea, "JoinResourceGroup", {
        "RegionId": REGION, "ResourceId": "tf-nothing", "ResourceGroupId": "rg-x", "ResourceType": "keypair"})) \
        == "InvalidKeyPairName.NotFound"
    # Delete: DeleteKeyPairs with a JSON array of the one name; the read then finds nothing.
    rpc(tea, "DeleteKeyPairs", {"RegionId": REGION, "KeyPairNames": json.dumps(["tf-created"])})
    assert rpc(tea, "DescribeKeyPairs", {"RegionId": REGION, "KeyPairName": "tf-created"})["KeyPairs"]["KeyPair"] == []


def volc_get(server, action, params):
    """The Volcengine provider's universal client: a GET to `/`, flat parameters, SDK-signed."""
    status, body, _ = raw(server, action, list(params.items()), region=VOLC_REGION)
    return status, body


def volc_ok(server, action, params):
    status, body = volc_get(server, action, params)
    assert status == 200, body
    return body["Result"]


def not_found(body):
    """The provider's ResourceNotFoundError: the error's text, lower-cased, says so."""
    text = json.dumps(body).lower()
    return any(s in text for s in ("notfound", "not found", "not exist", "not associate", "invalid",
                                   "not_found", "notexist"))


def test_volcengine_key_pair_and_associate(emu):
    # volcengine_ecs_key_pair: CreateKeyPair takes every schema field, KeyFile included.
    created = volc_ok(emu, "CreateKeyPair", {"KeyPairName": "tf-volc", "Description": "from terraform",
                                             "KeyFile": "/tmp/tf-volc.pem"})
    kp_id = created["KeyPairId"]
    read = volc_ok(emu, "DescribeKeyPairs", {"KeyPairIds.1": kp_id, "MaxResults": 20})
    assert read["NextToken"] == "" and [k["KeyPairName"] for k in read["KeyPairs"]] == ["tf-volc"]
    volc_ok(emu, "ModifyKeyPairAttribute", {"KeyPairId": kp_id, "Description": "changed"})
    assert volc_ok(emu, "DescribeKeyPairs", {"KeyPairIds.1": kp_id})["KeyPairs"][0]["Description"] == "changed"

    iid = volc_ok(emu, "RunInstances", {"ImageId": LINUX, "InstanceTypeId": "ecs.g3i.large", "InstanceName": "vm",
                                        "ZoneId": "cn-beijing-a", "Count": 1})["InstanceIds"][0]
    for _ in range(100):
        if volc_ok(emu, "DescribeInstances", {"InstanceIds.1": iid})["Instances"][0]["Status"] == "RUNNING":
            break
        time.sleep(0.1)

    def associated():
        """ReadResource: the key pair's name by ID, then the instance's KeyPairName compared."""
        kps = volc_ok(emu, "DescribeKeyPairs", {"KeyPairIds.1": kp_id})["KeyPairs"]
        if not kps:
            return "not exist"
        insts = volc_ok(emu, "DescribeInstances", {"InstanceIds.1": iid})["Instances"]
        assert isinstance(insts[0]["KeyPairName"], str), "a string even when unbound"
        return "associated" if insts[0]["KeyPairName"] == kps[0]["KeyPairName"] else "not associate"

    assert associated() == "not associate"
    # volcengine_ecs_key_pair_associate: AttachKeyPair with KeyPairId and InstanceIds.1; the
    # provider requires OperationDetails with a null Error.
    details = volc_ok(emu, "AttachKeyPair", {"KeyPairId": kp_id, "InstanceIds.1": iid})["OperationDetails"]
    assert details == [{"InstanceId": iid, "Error": None}]
    assert associated() == "associated", "visible at once: the provider does not poll"
    # The provider's Read retries FlowLimitExceeded (up to 3 minutes).
    admin(emu, "fault", "add", "--action", "DescribeInstances", "--dialect", "volcengine",
          "--code", "FlowLimitExceeded", "--count", "2")
    for attempt in range(5):
        status, body = volc_get(emu, "DescribeInstances", {"InstanceIds.1": iid})
        if "FlowLimitExceeded" not in json.dumps(body):
            break
        assert status == 429
    assert attempt == 2 and body["Result"]["Instances"][0]["KeyPairName"] == "tf-volc"
    # Delete: DetachKeyPair; the read then says "not associate", which the provider takes as gone.
    volc_ok(emu, "DetachKeyPair", {"KeyPairId": kp_id, "InstanceIds.1": iid})
    assert associated() == "not associate"
    # volcengine_ecs_key_pair delete: DeleteKeyPairs by KeyPairNames.1; then not found, by text.
    volc_ok(emu, "DeleteKeyPairs", {"KeyPairNames.1": "tf-volc"})
    assert associated() == "not exist"
    status, body = volc_get(emu, "DetachKeyPair", {"KeyPairId": kp_id, "InstanceIds.1": iid})
    assert status >= 400 and not_found(body), body


def test_the_fixture_isolates_tests(emu):
    """After the tests above, the snapshot load left nothing behind."""
    tea = tea_client(emu)
    assert rpc(tea, "DescribeKeyPairs", {"RegionId": REGION})["TotalCount"] == 0
    assert rpc(tea, "DescribeInstances", {"RegionId": REGION})["TotalCount"] == 0

