"""The Volcengine dialect through the official Python SDK (`volcenginesdkecs`), the same resources
through both dialects, the AttachKeyPair seed's error codes, and ClientToken idempotency."""

import concurrent.futures
import datetime
import json
import os
import stat
import subprocess

import pytest
import volcenginesdkecs as e
from alibabacloud_ecs20140526 import models as am

from conftest import AK, LINUX, NO_AGENT, WINDOWS, Server, tea_client
from helpers import md5_fingerprint, ssh_keygen
from volc_helpers import api_error, error_code, raw, volc

REGION = "cn-beijing"


def run(api, n=1, image=LINUX, **kw):
    req = e.RunInstancesRequest(image_id=image, instance_type_id="ecs.g3i.large", count=n,
                                instance_name=kw.pop("instance_name", "vm"), zone_id=kw.pop("zone_id", "cn-beijing-a"), **kw)
    return api.run_instances(req).instance_ids


def import_key(api, name):
    path, line = ssh_keygen()
    r = api.import_key_pair(e.ImportKeyPairRequest(key_pair_name=name, public_key=line))
    return path, line, r


def names(resp):
    return [k.key_pair_name for k in resp.key_pairs]


def test_import_describe_modify_and_delete_key_pairs(server):
    api = volc(server)
    path, line, r = import_key(api, "web.prod-1")
    assert r.finger_print == md5_fingerprint(path + ".pub").replace(":", "")
    assert r.key_pair_id.startswith("kp-")
    for n in ["web.prod-2", "db.prod", "batch-a", "batch-b"]:
        import_key(api, n)
    assert names(api.describe_key_pairs(e.DescribeKeyPairsRequest(key_pair_name="prod"))) == ["web.prod-1", "web.prod-2", "db.prod"]
    assert names(api.describe_key_pairs(e.DescribeKeyPairsRequest(key_pair_names=["db.prod", "batch-b"]))) == ["db.prod", "batch-b"]
    assert names(api.describe_key_pairs(e.DescribeKeyPairsRequest(key_pair_ids=[r.key_pair_id]))) == ["web.prod-1"]
    assert names(api.describe_key_pairs(e.DescribeKeyPairsRequest(finger_print=r.finger_print))) == ["web.prod-1"]
    seen, token = [], None
    while True:
        page = api.describe_key_pairs(e.DescribeKeyPairsRequest(max_results=2, next_token=token))
        seen += names(page)
        token = page.next_token
        assert isinstance(token, str)
        if not token:
            break
    assert seen == ["web.prod-1", "web.prod-2", "db.prod", "batch-a", "batch-b"]
    api.modify_key_pair_attribute(e.ModifyKeyPairAttributeRequest(key_pair_id=r.key_pair_id, description="web servers"))
    kp = api.describe_key_pairs(e.DescribeKeyPairsRequest(key_pair_ids=[r.key_pair_id])).key_pairs[0]
    assert kp.description == "web servers" and kp.project_name == "default"
    assert api_error(lambda: api.modify_key_pair_attribute(e.ModifyKeyPairAttributeRequest(
        key_pair_id=r.key_pair_id, description="1 starts with a digit"))) == (400, "InvalidKeyPairDescription.Malformed")
    out = api.delete_key_pairs(e.DeleteKeyPairsRequest(key_pair_names=["batch-a", "no-such-key"]))
    details = {d.key_pair_name: d.error for d in out.operation_details}
    assert details["batch-a"] is None
    assert details["no-such-key"].code == "InvalidKeyPair.NotFound"
    assert "batch-a" not in names(api.describe_key_pairs(e.DescribeKeyPairsRequest()))
    status, body, _ = raw(server, "DeleteKeyPair", [("KeyPairName", "batch-b")])
    assert (status, body["Result"]["KeyPairName"]) == (200, "batch-b")
    status, body, _ = raw(server, "DeleteKeyPair", [("KeyPairName", "batch-b")])
    assert (status, error_code(body)) == (404, "InvalidKeyPair.NotFound")


def test_a_created_key_pair_has_a_private_key_that_matches(server, tmp_path):
    api = volc(server)
    r = api.create_key_pair(e.CreateKeyPairRequest(key_pair_name="made.here", description="ci key"))
    assert r.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    key = tmp_path / "k.pem"
    key.write_text(r.private_key)
    os.chmod(key, stat.S_IRUSR | stat.S_IWUSR)
    assert md5_fingerprint(str(key)).replace(":", "") == r.finger_print
    assert api_error(lambda: api.create_key_pair(e.CreateKeyPairRequest(key_pair_name="made.here"))) == (400, "InvalidKeyPairName.Duplicate")
    for bad in ["a", "-bad", "bad..name", "has space", "x" * 65]:
        assert api_error(lambda: api.create_key_pair(e.CreateKeyPairRequest(key_pair_name=bad))) == (400, "InvalidKeyPairName.Malformed"), bad


def test_resources_are_shared_between_the_two_dialects(server):
    api = volc(server)
    tea = tea_client(server)
    _, line = ssh_keygen()
    tea.import_key_pair(am.ImportKeyPairRequest(region_id=REGION, key_pair_name="from-alibaba", public_key_body=line))
    assert names(api.describe_key_pairs(e.DescribeKeyPairsRequest(key_pair_name="from-alibaba"))) == ["from-alibaba"]
    ids = run(api, 2)
    out = api.attach_key_pair(e.AttachKeyPairRequest(key_pair_name="from-alibaba", instance_ids=ids))
    assert [d.error for d in out.operation_details] == [None, None]
    d = tea.describe_instances(am.DescribeInstancesRequest(region_id=REGION, key_pair_name="from-alibaba")).body
    assert d.total_count == 2
    api.detach_key_pair(e.DetachKeyPairRequest(key_pair_name="from-alibaba", instance_ids=ids))
    out = api.delete_key_pairs(e.DeleteKeyPairsRequest(key_pair_names=["from-alibaba"]))
    assert out.operation_details[0].error is None
    assert tea.describe_key_pairs(am.DescribeKeyPairsRequest(region_id=REGION)).body.total_count == 0
    # And the other way round.
    _, _, r = import_key(api, "from-volcengine")
    t = tea.attach_key_pair(am.AttachKeyPairRequest(region_id=REGION, key_pair_name="from-volcengine",
                                                    instance_ids=json.dumps(ids))).body
    assert t.fail_count == "0"
    inst = api.describe_instances(e.DescribeInstancesRequest(instance_ids=ids)).instances
    assert {i.key_pair_name for i in inst} == {"from-volcengine"} and {i.key_pair_id for i in inst} == {r.key_pair_id}
    tea.detach_key_pair(am.DetachKeyPairRequest(region_id=REGION, key_pair_name="from-volcengine", instance_ids=json.dumps(ids)))
    tea.delete_key_pairs(am.DeleteKeyPairsRequest(region_id=REGION, key_pair_names='["from-volcengine"]'))
    assert names(api.describe_key_pairs(e.DescribeKeyPairsRequest())) == []
    # Another region is another place.
    import_key(api, "beijing-only")
    assert names(volc(server, region="cn-shanghai").describe_key_pairs(e.DescribeKeyPairsRequest())) == []


def test_attach_reports_every_seed_error_at_its_layer(server):
    api = volc(server)
    _, _, kp = import_key(api, "seed-key")
    _, _, other = import_key(api, "other-key")
    running = run(api)[0]
    stopped = run(api)[0]
    api.stop_instance(e.StopInstanceRequest(instance_id=stopped))
    windows = run(api, image=WINDOWS)[0]
    no_agent = run(api, image=NO_AGENT)[0]
    ids = [running, stopped, windows, no_agent, "i-missing000000000000"]
    out = api.attach_key_pair(e.AttachKeyPairRequest(key_pair_name="seed-key", instance_ids=ids))
    errors = {d.instance_id: (d.error.code if d.error else None) for d in out.operation_details}
    assert errors == {
        running: None,
        stopped: None,
        windows: "InvalidKeyPairForWindows.Unsupported",
        no_agent: "InvalidResetAuthenticationAgent.NotFound",
        "i-missing000000000000": "InvalidInstance.NotFound",
    }
    # Both given, naming different key pairs: the ID wins.
    api.attach_key_pair(e.AttachKeyPairRequest(key_pair_name="seed-key", key_pair_id=other.key_pair_id, instance_ids=[running]))
    assert api.describe_instances(e.DescribeInstancesRequest(instance_ids=[running])).instances[0].key_pair_name == "other-key"
    cases = [
        ([("InstanceIds.1", running)], 400, "MissingParameter.KeyPairNameAndKeyPairId"),
        ([("KeyPairName", "seed-key")], 400, "MissingParameter.InstanceIds"),
        ([("KeyPairName", "seed-key")] + [(f"InstanceIds.{i}", f"i-{i:020d}") for i in range(1, 102)], 400,
         "LimitExceeded.MaximumInstanceIds"),
        ([("KeyPairName", "no-such"), ("InstanceIds.1", running)], 404, "InvalidKeyPair.NotFound"),
        ([("KeyPairName", "seed-key"), ("InstanceIds.0", running)], 400, "InvalidInstanceIds.Malformed"),
        ([("KeyPairName", "seed-key"), ("InstanceIds.1", running), ("InstanceIds.3", stopped)], 400, "InvalidInstanceIds.Malformed"),
        ([("KeyPairName", "seed-key"), ("InstanceIds.1", "")], 400, "InvalidInstanceIds.Malformed"),
        ([("KeyPairName", "seed-key"), ("InstanceIds.1", running), ("ClientToken", "t" * 65)], 400, "InvalidClientToken.Malformed"),
        ([("KeyPairName", "seed-key"), ("InstanceIds.1", running), ("ClientToken", "tök")], 400, "InvalidClientToken.Malformed"),
    ]
    for params, status, code in cases:
        for action in ["AttachKeyPair", "DetachKeyPair"]:
            got, body, _ = raw(server, action, params)
            assert (got, error_code(body)) == (status, code), (action, params[:3])
    # 100 IDs, one given twice, are fine.
    hundred = [("KeyPairName", "seed-key")] + [(f"InstanceIds.{i}", running if i == 1 else f"i-{i:020d}") for i in range(1, 101)]
    hundred.append(("InstanceIds.101", running))
    status, body, _ = raw(server, "AttachKeyPair", hundred)
    assert status == 200 and len(body["Result"]["OperationDetails"]) == 100
    # Neither RUNNING nor STOPPED: refused for that instance only.
    slow = Server(env_extra={"KEYPLANE_TRANSITION_DELAY_MS": "60000"})
    try:
        sapi = volc(slow)
        import_key(sapi, "slow-key")
        creating = run(sapi)[0]
        assert sapi.describe_instances(e.DescribeInstancesRequest(instance_ids=[creating])).instances[0].status == "CREATING"
        out = sapi.attach_key_pair(e.AttachKeyPairRequest(key_pair_name="slow-key", instance_ids=[creating]))
        assert out.operation_details[0].error.code == "InvalidInstanceStatus"
    finally:
        slow.stop()


def test_gateway_errors_for_bad_signatures_and_scopes(server):
    status, body, _ = raw(server, "DescribeKeyPairs", [], service="vpc")
    assert (status, error_code(body)) == (404, "ServiceNotFound")
    status, body, _ = raw(server, "DescribeKeyPairs", [], region="mars-1")
    assert (status, error_code(body)) == (404, "InvalidRegion.NotFound")
    status, body, _ = raw(server, "DescribeKeyPairs", [], sk="wrong")
    assert (status, error_code(body)) == (401, "SignatureDoesNotMatch")
    refused = [line for line in server.log().splitlines() if "SignatureDoesNotMatch" in line]
    assert refused and all(AK in line and "DescribeKeyPairs" in line for line in refused), \
        "the log names the AccessKey ID and the action of a refused signature"
    assert body["ResponseMetadata"]["Error"]["CodeN"] == 100010
    assert api_error(lambda: volc(server, ak="AKLTnobody").describe_key_pairs(e.DescribeKeyPairsRequest())) == (401, "InvalidAccessKey")

    def drop(name):
        def f(h):
            h["Authorization"] = h["Authorization"].replace(f"{name};", "").replace(f";{name}", "")
        return f
    for name in ["host", "x-date"]:
        status, body, _ = raw(server, "DescribeKeyPairs", [], mutate_headers=drop(name))
        assert (status, error_code(body)) == (401, "InvalidCredential"), name

    def future(h):
        pass
    import volcenginesdkcore.signv4 as signv4
    real = signv4.datetime

    class Later:
        class datetime:
            @staticmethod
            def utcnow():
                return real.datetime.utcnow() + datetime.timedelta(minutes=16)
    signv4.datetime = Later
    try:
        status, body, _ = raw(server, "DescribeKeyPairs", [])
    finally:
        signv4.datetime = real
    assert (status, error_code(body)) == (400, "InvalidTimestamp")
    status, body, _ = raw(server, "DescribeKeyPairs", [])
    assert status == 200 and body["ResponseMetadata"]["Service"] == "ecs" and body["ResponseMetadata"]["Region"] == REGION
    status, body, _ = raw(server, "NoSuchAction", [])
    assert (status, error_code(body)) == (404, "InvalidActionOrVersion")
    status, body, _ = raw(server, "AttachKeypair", [])
    assert (status, error_code(body)) == (404, "InvalidActionOrVersion")
    assert body["ResponseMetadata"]["Error"]["Message"].endswith("Did you mean AttachKeyPair?")


def test_instances_statuses_batches_and_catalog(server):
    api = volc(server)
    regions = {r.region_id for r in api.describe_regions(e.DescribeRegionsRequest()).regions}
    assert {"cn-beijing", "cn-shanghai", "cn-hangzhou", "ap-southeast-1"} <= regions
    assert [z.zone_id for z in api.describe_zones(e.DescribeZonesRequest()).zones][0] == "cn-beijing-a"
    assert {i.os_type for i in api.describe_images(e.DescribeImagesRequest()).images} == {"Linux", "Windows"}
    ids = run(api, 3, instance_name="batch")
    listed = api.describe_instances(e.DescribeInstancesRequest(instance_name="atc"))
    assert listed.total_count == 3 and {i.status for i in listed.instances} == {"RUNNING"}
    assert all(i.key_pair_name == "" for i in listed.instances)
    api.stop_instance(e.StopInstanceRequest(instance_id=ids[0]))
    assert api_error(lambda: api.stop_instance(e.StopInstanceRequest(instance_id=ids[0]))) == (400, "InvalidInstanceStatus")
    assert api_error(lambda: api.start_instance(e.StartInstanceRequest(instance_id="i-missing000000000000"))) == (404, "InvalidInstance.NotFound")
    out = api.start_instances(e.StartInstancesRequest(instance_ids=[ids[0], ids[1]]))
    errs = {d.instance_id: (d.error.code if d.error else None) for d in out.operation_details}
    assert errs == {ids[0]: None, ids[1]: "InvalidInstanceStatus"}
    out = api.reboot_instances(e.RebootInstancesRequest(instance_ids=ids))
    assert all(d.error is None for d in out.operation_details)
    out = api.stop_instances(e.StopInstancesRequest(instance_ids=ids[:1]))
    assert out.operation_details[0].error is None
    assert api.describe_instances(e.DescribeInstancesRequest(status="STOPPED")).total_count == 1
    api.delete_instance(e.DeleteInstanceRequest(instance_id=ids[0]))
    assert api.describe_instances(e.DescribeInstancesRequest()).total_count == 2


def test_a_client_token_retry_returns_the_first_result_byte_for_byte(server):
    api = volc(server)
    import_key(api, "idem-key")
    ids = run(api, 2)
    params = [("KeyPairName", "idem-key"), ("InstanceIds.1", ids[0]), ("InstanceIds.2", ids[1]), ("ClientToken", "tok-attach-1")]
    s1, _, b1 = raw(server, "AttachKeyPair", params)
    s2, _, b2 = raw(server, "AttachKeyPair", params)
    assert s1 == s2 == 200 and b1 == b2
    status, body, _ = raw(server, "AttachKeyPair", params[:2] + [("ClientToken", "tok-attach-1")])
    assert (status, error_code(body)) == (400, "IdempotentParameterMismatch")
    status, _, _ = raw(server, "DetachKeyPair", params)
    assert status == 200, "tokens are scoped per action"
    # RunInstances retried with the same token creates nothing new, even after a restart.
    first = api.run_instances(e.RunInstancesRequest(image_id=LINUX, instance_type_id="t", count=2, instance_name="x",
                                                    zone_id="cn-beijing-a", client_token="tok-run-1")).instance_ids
    server.restart()
    api = volc(server)
    again = api.run_instances(e.RunInstancesRequest(image_id=LINUX, instance_type_id="t", count=2, instance_name="x",
                                                    zone_id="cn-beijing-a", client_token="tok-run-1")).instance_ids
    assert again == first
    assert api.describe_instances(e.DescribeInstancesRequest(instance_name="x")).total_count == 2
    s3, _, b3 = raw(server, "AttachKeyPair", params)
    assert b3 == b1, "kept across a restart"
    # A retried CreateKeyPair never gets the private key again: it is not stored anywhere.
    c1 = api.create_key_pair(e.CreateKeyPairRequest(key_pair_name="idem.made", client_token="tok-create"))
    c2 = api.create_key_pair(e.CreateKeyPairRequest(key_pair_name="idem.made", client_token="tok-create"))
    assert c1.private_key and not c2.private_key and c1.key_pair_id == c2.key_pair_id


def test_concurrent_duplicates_apply_once(server):
    api = volc(server, retries=False)
    _, line = ssh_keygen()

    def attempt(_):
        try:
            return api.import_key_pair(e.ImportKeyPairRequest(key_pair_name="raced", public_key=line, client_token="tok-race")).key_pair_id
        except Exception as ex:  # the SDK raises ApiException
            return ex.status, json.loads(ex.body)["ResponseMetadata"]["Error"]["Code"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(16)))
    ids = {r for r in results if isinstance(r, str)}
    assert len(ids) == 1, results
    assert all(r == (412, "IdempotentProcessing") for r in results if not isinstance(r, str)), results
    assert names(api.describe_key_pairs(e.DescribeKeyPairsRequest())) == ["raced"]


def test_the_sdk_backs_off_on_429_and_its_retry_applies_once():
    s = Server(env_extra={"KEYPLANE_THROTTLE_PER_SECOND": "1", "KEYPLANE_THROTTLE_BURST": "1"})
    try:
        api = volc(s)
        run(api, 1, instance_name="first")
        ids = api.run_instances(e.RunInstancesRequest(image_id=LINUX, instance_type_id="t", count=1, instance_name="retried",
                                                      zone_id="cn-beijing-a", client_token="tok-throttled")).instance_ids
        assert "FlowLimitExceeded" in s.log(), "the first attempt was throttled (429) and the SDK retried"
        again = api.run_instances(e.RunInstancesRequest(image_id=LINUX, instance_type_id="t", count=1, instance_name="retried",
                                                        zone_id="cn-beijing-a", client_token="tok-throttled")).instance_ids
        assert again == ids
        import time
        time.sleep(1.1)
        assert api.describe_instances(e.DescribeInstancesRequest(instance_name="retried")).total_count == 1
    finally:
        s.stop()


def test_the_alibaba_dialect_honours_client_tokens_too(server):
    tea = tea_client(server)
    req = am.RunInstancesRequest(region_id="cn-hangzhou", image_id=LINUX, instance_type="ecs.g7.large", amount=2, client_token="ali-tok-1")
    first = tea.run_instances(req).body.instance_id_sets.instance_id_set
    again = tea.run_instances(req).body.instance_id_sets.instance_id_set
    assert first == again
    assert tea.describe_instances(am.DescribeInstancesRequest(region_id="cn-hangzhou")).body.total_count == 2
