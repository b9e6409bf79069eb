"""Every action of the Alibaba dialect through the current official Python SDK
(alibabacloud-ecs20140526), with its default V3 signature and with V1 (signature_algorithm='v2')."""

import json
import os
import stat
import subprocess

import pytest
from alibabacloud_ecs20140526 import models as m

from conftest import AK, LINUX, NO_AGENT, REGION, WINDOWS, tea_client
from helpers import ids_json, md5_fingerprint, sdk_error, ssh_keygen


def run(c, image=LINUX, amount=1, **kw):
    r = c.run_instances(m.RunInstancesRequest(region_id=REGION, image_id=image, instance_type="ecs.g7.large",
                                              amount=amount, **kw))
    return r.body.instance_id_sets.instance_id_set


def describe(c, **kw):
    return c.describe_instances(m.DescribeInstancesRequest(region_id=REGION, **kw)).body


@pytest.mark.parametrize("v1", [False, True], ids=["v3", "v1"])
def test_import_describe_and_delete_a_key_made_by_ssh_keygen(server, v1):
    c = tea_client(server, v1=v1)
    for key_type, bits in [("ed25519", None), ("rsa", 2048), ("ecdsa", 256), ("ecdsa", 521)]:
        path, line = ssh_keygen(key_type=key_type, bits=bits)
        name = f"kp-{key_type}-{bits}"
        r = c.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name=name, public_key_body=line))
        assert r.body.key_pair_finger_print == md5_fingerprint(path + ".pub")
        d = c.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION, key_pair_name=name,
                                                          include_public_key=True)).body
        assert d.total_count == 1
        kp = d.key_pairs.key_pair[0]
        assert kp.public_key == line
        assert kp.key_pair_finger_print == md5_fingerprint(path + ".pub")
    c.delete_key_pairs(m.DeleteKeyPairsRequest(region_id=REGION, key_pair_names=json.dumps(
        ["kp-ed25519-None", "kp-rsa-2048", "kp-ecdsa-256", "kp-ecdsa-521"])))
    assert c.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION)).body.total_count == 0


def test_rfc4716_input_gives_the_same_fingerprint(tea):
    path, line = ssh_keygen(key_type="rsa", bits=3072)
    rfc = subprocess.run(["ssh-keygen", "-e", "-f", path + ".pub"], check=True, capture_output=True, text=True).stdout
    assert rfc.startswith("---- BEGIN SSH2 PUBLIC KEY ----")
    r = tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name="from-rfc4716", public_key_body=rfc))
    assert r.body.key_pair_finger_print == md5_fingerprint(path + ".pub")


def test_a_created_private_key_matches_its_fingerprint(tea, tmp_path):
    r = tea.create_key_pair(m.CreateKeyPairRequest(region_id=REGION, key_pair_name="made-here",
                                                   tag=[m.CreateKeyPairRequestTag(key="team", value="ops")]))
    body = r.body
    assert body.private_key_body.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert body.key_pair_id.startswith("kp-")
    key = tmp_path / "made-here.pem"
    key.write_text(body.private_key_body)
    os.chmod(key, stat.S_IRUSR | stat.S_IWUSR)
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], check=True, capture_output=True, text=True).stdout
    assert md5_fingerprint(str(key)) == body.key_pair_finger_print
    d = tea.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION, include_public_key=True,
                                                        tag=[m.DescribeKeyPairsRequestTag(key="team", value="ops")])).body
    assert d.key_pairs.key_pair[0].public_key.split()[:2] == pub.split()[:2]
    assert "PRIVATE" not in json.dumps(d.to_map())


def test_bad_key_material_is_refused_with_the_vendor_error(tea):
    path, rsa1024 = ssh_keygen(key_type="rsa", bits=1024)
    _, good = ssh_keygen()
    for bad in [rsa1024, f'command="/bin/sh" {good}', f"{good}\n{good}", good[:40] + "!!" + good[42:],
                "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4Ed", good.replace(" ", " \x07", 1)]:
        status, code = sdk_error(lambda: tea.import_key_pair(
            m.ImportKeyPairRequest(region_id=REGION, key_pair_name="bad", public_key_body=bad)))
        assert (status, code) == (400, "InvalidPublicKeyBody.Malformed"), bad
    status, code = sdk_error(lambda: tea.import_key_pair(
        m.ImportKeyPairRequest(region_id=REGION, key_pair_name="9-starts-with-digit", public_key_body=good)))
    assert (status, code) == (400, "InvalidKeyPairName.Malformed")
    assert tea.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION)).body.total_count == 0


def test_the_seed_scenario_binds_where_it_can_and_reports_the_rest(tea):
    _, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name="seed-kp", public_key_body=line))
    running = run(tea)[0]
    stopped = run(tea)[0]
    tea.stop_instance(m.StopInstanceRequest(instance_id=stopped))
    windows = run(tea, image=WINDOWS)[0]
    legacy = run(tea, io_optimized="none")[0]
    no_agent = run(tea, image=NO_AGENT)[0]
    ids = [running, stopped, windows, legacy, no_agent, "i-unknown0000000000000"]
    r = tea.attach_key_pair(m.AttachKeyPairRequest(region_id=REGION, key_pair_name="seed-kp",
                                                   instance_ids=ids_json(ids))).body
    assert (r.total_count, r.fail_count, r.key_pair_name) == ("6", "4", "seed-kp")
    by_id = {x.instance_id: x for x in r.results.result}
    assert by_id[running].success == "true" and by_id[running].code == "200"
    assert by_id[running].message == "successful"
    assert by_id[windows].code == "DependencyViolation.WindowsInstance"
    assert by_id[legacy].code == "DependencyViolation.IoOptimize"
    assert by_id[no_agent].code == "InvalidResetAuthenticationAgent.NotFound"
    assert by_id["i-unknown0000000000000"].code == "InvalidInstanceId.NotFound"
    assert by_id[windows].success == "false"
    bound = describe(tea, key_pair_name="seed-kp")
    assert sorted(i.instance_id for i in bound.instances.instance) == sorted([running, stopped])
    tea.reboot_instance(m.RebootInstanceRequest(instance_id=running))
    tea.start_instance(m.StartInstanceRequest(instance_id=stopped))
    r = tea.detach_key_pair(m.DetachKeyPairRequest(region_id=REGION, key_pair_name="seed-kp",
                                                   instance_ids=ids_json([running, windows]))).body
    assert (r.total_count, r.fail_count) == ("2", "1")
    inst = describe(tea, instance_ids=ids_json([running])).instances.instance[0]
    assert inst.key_pair_name == ""


def test_request_level_errors_fail_the_whole_call(tea):
    _, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name="req-kp", public_key_body=line))
    ids = run(tea, amount=2)
    cases = [
        (dict(key_pair_name="req-kp", instance_ids="not json"), 400, "InvalidInstanceIds.ValueNotSupported"),
        (dict(key_pair_name="req-kp", instance_ids="[]"), 400, "InvalidInstanceIds.ValueNotSupported"),
        (dict(key_pair_name="req-kp", instance_ids=ids_json([f"i-{n:020d}" for n in range(51)])), 403,
         "InstanceKeyPairLimitExceeded"),
        (dict(key_pair_name="no-such-kp", instance_ids=ids_json(ids)), 400, "InvalidKeyPairName.NotFound"),
        (dict(instance_ids=ids_json(ids)), 400, "MissingParameter"),
    ]
    for kw, status, code in cases:
        assert sdk_error(lambda: tea.attach_key_pair(m.AttachKeyPairRequest(region_id=REGION, **kw))) == (status, code)
    with pytest.raises(Exception) as e:
        tea.attach_key_pair(m.AttachKeyPairRequest(region_id=REGION, key_pair_name="req-kp", instance_ids=ids[0]))
    assert 'Give a JSON array of instance IDs, e.g. ["i-' in e.value.message, "the message shows the form that works"
    assert sdk_error(lambda: tea.attach_key_pair(m.AttachKeyPairRequest(
        region_id="mars-1", key_pair_name="req-kp", instance_ids=ids_json(ids)))) == (404, "InvalidRegionId.NotFound")
    assert describe(tea, key_pair_name="req-kp").total_count == 0


def test_a_bound_key_pair_cannot_be_deleted(tea):
    _, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name="busy", public_key_body=line))
    i = run(tea, key_pair_name="busy")[0]
    status, code = sdk_error(lambda: tea.delete_key_pairs(m.DeleteKeyPairsRequest(region_id=REGION,
                                                                                  key_pair_names='["busy"]')))
    assert (status, code) == (400, "InvalidParameter.KeypairAlreadyAttachedInstance")
    tea.stop_instance(m.StopInstanceRequest(instance_id=i))
    tea.delete_instance(m.DeleteInstanceRequest(instance_id=i))
    tea.delete_key_pairs(m.DeleteKeyPairsRequest(region_id=REGION, key_pair_names='["busy"]'))


def test_instances_regions_zones_images_and_status(tea):
    regions = tea.describe_regions(m.DescribeRegionsRequest()).body.regions.region
    assert {"cn-hangzhou", "cn-beijing", "cn-shanghai", "ap-southeast-1"} <= {r.region_id for r in regions}
    zones = tea.describe_zones(m.DescribeZonesRequest(region_id=REGION)).body.zones.zone
    assert zones and all(z.zone_id.startswith(REGION) for z in zones)
    images = tea.describe_images(m.DescribeImagesRequest(region_id=REGION, page_size=100)).body
    assert {"linux", "windows"} <= {i.ostype for i in images.images.image}
    ids = run(tea, amount=3, instance_name="batch", zone_id=zones[1].zone_id,
              tag=[m.RunInstancesRequestTag(key="env", value="ci")])
    assert len(ids) == 3
    st = tea.describe_instance_status(m.DescribeInstanceStatusRequest(region_id=REGION, instance_id=ids)).body
    assert {s.status for s in st.instance_statuses.instance_status} == {"Running"}
    tea.stop_instance(m.StopInstanceRequest(instance_id=ids[0]))
    assert sdk_error(lambda: tea.stop_instance(m.StopInstanceRequest(instance_id=ids[0]))) == (403, "IncorrectInstanceStatus")
    d = describe(tea, status="Stopped")
    assert [i.instance_id for i in d.instances.instance] == [ids[0]]
    d = describe(tea, instance_name="bat*", zone_id=zones[1].zone_id, tag=[m.DescribeInstancesRequestTag(key="env", value="ci")])
    assert d.total_count == 3
    inst = d.instances.instance[0]
    assert inst.key_pair_name == "" and inst.io_optimized is True and inst.ostype == "linux"
    tea.delete_instance(m.DeleteInstanceRequest(instance_id=ids[0]))
    tea.delete_instance(m.DeleteInstanceRequest(instance_id=ids[1], force=True))
    assert describe(tea).total_count == 1
    assert sdk_error(lambda: tea.start_instance(m.StartInstanceRequest(instance_id=ids[0]))) == (404, "InvalidInstanceId.NotFound")


def test_next_token_paging_walks_every_instance(tea):
    ids = run(tea, amount=23)
    seen, token = [], None
    while True:
        body = describe(tea, max_results=10, next_token=token)
        seen += [i.instance_id for i in body.instances.instance]
        token = body.next_token
        if not token:
            break
    assert seen == ids


def test_tag_and_untag_resources(tea):
    _, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name="tagme", public_key_body=line))
    tea.tag_resources(m.TagResourcesRequest(region_id=REGION, resource_type="keypair", resource_id=["tagme"],
                                            tag=[m.TagResourcesRequestTag(key="owner", value="alice")]))
    q = m.DescribeKeyPairsRequest(region_id=REGION, tag=[m.DescribeKeyPairsRequestTag(key="owner", value="alice")])
    assert tea.describe_key_pairs(q).body.total_count == 1
    tea.untag_resources(m.UntagResourcesRequest(region_id=REGION, resource_type="keypair", resource_id=["tagme"],
                                                tag_key=["owner"]))
    assert tea.describe_key_pairs(q).body.total_count == 0


def test_a_wrong_secret_and_an_unknown_key_are_refused(server):
    status, code = sdk_error(lambda: tea_client(server, sk="wrong").describe_regions(m.DescribeRegionsRequest()))
    assert (status, code) == (400, "SignatureDoesNotMatch")
    with pytest.raises(Exception) as e:
        tea_client(server, sk="wrong").describe_regions(m.DescribeRegionsRequest())
    assert "Check that the AccessKey secret is the one issued with this AccessKey ID" in e.value.message
    refused = [line for line in server.log().splitlines() if "SignatureDoesNotMatch" in line]
    assert refused and all(AK in line and "DescribeRegions" in line for line in refused), \
        "the log names the AccessKey ID and the action of a refused signature"
    assert "wrong" not in "".join(refused)
    status, code = sdk_error(lambda: tea_client(server, ak="LTAInobody").describe_regions(m.DescribeRegionsRequest()))
    assert (status, code) == (404, "InvalidAccessKeyId.NotFound")


def test_a_restart_in_the_middle_loses_nothing(server, tea):
    _, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name="durable", public_key_body=line))
    ids = run(tea, amount=2)
    tea.attach_key_pair(m.AttachKeyPairRequest(region_id=REGION, key_pair_name="durable", instance_ids=ids_json(ids)))
    server.restart()
    c = tea_client(server)
    assert describe(c, key_pair_name="durable").total_count == 2
    r = c.detach_key_pair(m.DetachKeyPairRequest(region_id=REGION, key_pair_name="durable", instance_ids=ids_json(ids[:1]))).body
    assert r.fail_count == "0"
    assert describe(c, key_pair_name="durable").total_count == 1


def test_secrets_never_reach_the_log(server, tea):
    tea.create_key_pair(m.CreateKeyPairRequest(region_id=REGION, key_pair_name="secret-check"))
    server.stop()
    log = server.log()
    assert AK in log, "requests are logged with the AccessKey ID (not its secret)"
    assert "end-to-end-secret-value" not in log
    assert "PRIVATE KEY" not in log
