"""Emulator mode (issue 17, SPEC section 14), end to end with the official SDKs: injected faults
(request-level through the Tea SDK's own retry path, per instance inside a 50-instance batch, in
the Volcengine envelope, latency, seeded probabilities), holds, the simulated clock, snapshots and
account deletion; and without --emulator, every control refused with nothing changed."""

import json
import os
import time
import urllib.request

import pytest
from alibabacloud_ecs20140526 import models as m

import volcenginesdkecs as vm
from conftest import LINUX, POSTGRES, REGION, Server, tea_client
from helpers import admin, ids_json, ssh_keygen
from volc_helpers import raw, volc

EMULATOR = {"KEYPLANE_EMULATOR": "1"}


@pytest.fixture
def emu():
    s = Server(env_extra=EMULATOR)
    yield s
    if s.proc.poll() is None:
        s.proc.terminate()
        s.proc.wait(15)


def ctl(server, *args):
    """`keyplane admin ARGS`, which must succeed; its JSON."""
    out = admin(server, *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def run(tea, n):
    r = tea.run_instances(m.RunInstancesRequest(region_id=REGION, image_id=LINUX, instance_type="ecs.g7.large",
                                                amount=n))
    return r.body.instance_id_sets.instance_id_set


def describe(tea, ids):
    out = {}
    for chunk in (ids[i:i + 100] for i in range(0, len(ids), 100)):
        body = tea.describe_instances(m.DescribeInstancesRequest(
            region_id=REGION, instance_ids=ids_json(chunk), max_results=100)).body
        out.update({i.instance_id: i for i in body.instances.instance})
    return out


def status(tea, iid):
    return describe(tea, [iid])[iid].status


def import_key(tea, name):
    _, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=REGION, key_pair_name=name, public_key_body=line))


def audit(server, action):
    return ctl(server, "audit", "--action", action, "--max", "1000")["Records"]


def test_without_emulator_mode_every_control_is_refused_and_nothing_changes(server):
    tea = tea_client(server)
    import_key(tea, "kept")
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as r:
        assert r.read() == b"ok\n"
    for args in (["fault", "add", "--action", "DescribeKeyPairs", "--code", "Throttling.User"],
                 ["fault", "list"], ["fault", "delete", "fault-x"], ["fault", "clear"],
                 ["clock", "advance", "--seconds", "60"], ["clock", "set", "--at", "2040-01-01T00:00:00Z"],
                 ["clock", "show"], ["snapshot", "save", "s"], ["snapshot", "load", "s"],
                 ["snapshot", "list"], ["snapshot", "delete", "s"], ["account", "delete", "other"]):
        out = admin(server, *args)
        assert out.returncode != 0, args
        assert "OperationDenied.EmulatorOff" in out.stderr and "--emulator" in out.stderr, out.stderr
    assert not os.path.exists(os.path.join(server.dir, "snapshots"))
    names = [k.key_pair_name for k in tea.describe_key_pairs(
        m.DescribeKeyPairsRequest(region_id=REGION)).body.key_pairs.key_pair]
    assert names == ["kept"]
    assert tea.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION)).body.total_count == 1


def test_an_injected_throttling_runs_the_tea_sdks_retry_path(emu):
    from darabonba.policy.retry import RetryOptions
    with urllib.request.urlopen(f"{emu.url}/healthz", timeout=5) as r:
        assert b"emulator" in r.read()
    fault = ctl(emu, "fault", "add", "--action", "DescribeKeyPairs", "--code", "Throttling.User",
                "--message", "Request was denied due to user flow control.", "--count", "2")["FaultId"]
    plain = tea_client(emu)
    try:
        plain.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION))
        raise AssertionError("the first call is throttled")
    except Exception as e:
        assert e.code == "Throttling.User" and e.status_code == 400, e
    # The SDK configured to retry Throttling.User: its second attempt uses the fault's last
    # firing, the third succeeds.
    retrying = tea_client(emu)
    retrying._retry_options = RetryOptions({"retryable": True, "retryCondition": [
        {"maxAttempts": 3, "errorCode": ["Throttling.User"], "backoff": {"policy": "Fixed", "period": 10}}]})
    body = retrying.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION)).body
    assert body.total_count == 0
    listed = ctl(emu, "fault", "list")["Faults"]
    assert [(f["FaultId"], f["Fired"], f["Remaining"]) for f in listed] == [(fault, 2, 0)]
    # Both firings are in the audit log, marked as injected; the call that went through is not.
    injected = [r for r in audit(emu, "DescribeKeyPairs") if r["Injected"]]
    assert [(r["Result"], r["Injected"]) for r in injected] == [("Throttling.User", [fault])] * 2


def test_one_instance_of_a_50_instance_attach_fails_with_the_injected_code(emu):
    tea = tea_client(emu)
    ids = run(tea, 50)
    import_key(tea, "batch")
    victim = ids[17]
    ctl(emu, "fault", "add", "--action", "AttachKeyPair", "--instance-id", victim,
        "--code", "IncorrectInstanceStatus", "--message", "The instance is busy.")
    r = tea.attach_key_pair(m.AttachKeyPairRequest(region_id=REGION, key_pair_name="batch",
                                                   instance_ids=ids_json(ids))).body
    assert (int(r.total_count), int(r.fail_count)) == (50, 1)
    failed = [x for x in r.results.result if x.success != "true"]
    assert [(x.instance_id, x.code, x.message) for x in failed] == [
        (victim, "IncorrectInstanceStatus", "The instance is busy.")]
    seen = describe(tea, ids)
    assert seen[victim].key_pair_name in (None, "")
    assert all(seen[i].key_pair_name == "batch" for i in ids if i != victim)
    record = audit(emu, "AttachKeyPair")[-1]
    assert record["Injected"] and [x for x in record["InstanceResults"] if x["Result"] != "OK"] == [
        {"InstanceId": victim, "Result": "IncorrectInstanceStatus"}]


def test_a_held_reboot_stays_starting_until_the_fault_is_deleted(emu):
    tea = tea_client(emu)
    iid, other = run(tea, 2)
    fault = ctl(emu, "fault", "add", "--action", "RebootInstance", "--instance-id", iid, "--hold")["FaultId"]
    tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid, force_stop=True))
    tea.reboot_instance(m.RebootInstanceRequest(instance_id=other))
    assert status(tea, other) == "Running", "the fault holds only its instance"
    for _ in range(3):
        assert status(tea, iid) == "Starting"
        time.sleep(0.5)
    assert status(tea, iid) == "Starting", "the clock moving does not release a hold"
    ctl(emu, "clock", "advance", "--seconds", "86400")
    assert status(tea, iid) == "Starting"
    assert ctl(emu, "fault", "list")["Faults"][0]["Held"] == [iid]
    ctl(emu, "fault", "delete", fault)
    assert status(tea, iid) == "Running"


def test_clock_advance_finishes_a_transition_and_expires_a_client_token():
    s = Server(env_extra={**EMULATOR, "KEYPLANE_TRANSITION_DELAY_MS": str(3600 * 1000)})
    try:
        tea = tea_client(s)
        req = m.RunInstancesRequest(region_id=REGION, image_id=LINUX, instance_type="ecs.g7.large", amount=1,
                                    client_token="run-once-token")
        first = tea.run_instances(req).body.instance_id_sets.instance_id_set
        assert status(tea, first[0]) == "Pending", "an hour-long transition"
        again = tea.run_instances(req).body.instance_id_sets.instance_id_set
        assert again == first, "a retry within the day is the same call"
        now = ctl(s, "clock", "show")["Now"]
        later = ctl(s, "clock", "advance", "--seconds", "3601")["Now"]
        assert later > now
        assert status(tea, first[0]) == "Running", "the transition finished at once"
        ctl(s, "clock", "advance", "--seconds", str(24 * 3600))
        fresh = tea.run_instances(req).body.instance_id_sets.instance_id_set
        assert fresh != first, "a day later the token has expired: the call runs again"
        # The clock moves forward only.
        out = admin(s, "clock", "set", "--at", "2000-01-01T00:00:00Z")
        assert out.returncode != 0 and "forward" in out.stderr
    finally:
        s.proc.terminate()
        s.proc.wait(15)


def test_faults_speak_the_volcengine_envelope_and_add_latency(emu):
    api = volc(emu, retries=False)
    ctl(emu, "fault", "add", "--action", "DescribeKeyPairs", "--dialect", "volcengine",
        "--code", "FlowLimitExceeded", "--count", "1")
    ctl(emu, "fault", "add", "--action", "DescribeKeyPairs", "--dialect", "alibaba",
        "--code", "Throttling.User")
    status_, body, _ = raw(emu, "DescribeKeyPairs", [])
    assert status_ == 429, "Volcengine's own status for its throttling code"
    assert body["ResponseMetadata"]["Error"]["Code"] == "FlowLimitExceeded"
    assert body["ResponseMetadata"]["Action"] == "DescribeKeyPairs"
    api.describe_key_pairs(vm.DescribeKeyPairsRequest())  # the count is used up
    ctl(emu, "fault", "clear")
    ctl(emu, "fault", "add", "--action", "DescribeKeyPairs", "--latency-ms", "700")
    started = time.monotonic()
    api.describe_key_pairs(vm.DescribeKeyPairsRequest())
    assert time.monotonic() - started >= 0.7, "the call waited at least the latency"


def test_a_seeded_probability_fires_the_same_way_every_run(emu):
    tea = tea_client(emu)

    def pattern(seed):
        ctl(emu, "fault", "clear")
        ctl(emu, "fault", "add", "--action", "DescribeRegions", "--code", "ServiceUnavailable",
            "--probability", "0.5", "--seed", str(seed))
        out = []
        for _ in range(24):
            try:
                tea.describe_regions(m.DescribeRegionsRequest())
                out.append(0)
            except Exception as e:
                assert e.code == "ServiceUnavailable" and e.status_code == 503, e
                out.append(1)
        return out

    a, b = pattern(7), pattern(7)
    assert a == b and 0 < sum(a) < 24, a


def test_on_postgresql_snapshots_are_refused_clearly(emu):
    if not POSTGRES:
        pytest.skip("the store is SQLite")
    out = admin(emu, "snapshot", "save", "fixture")
    assert out.returncode != 0 and "pg_dump" in out.stderr, out.stderr


@pytest.mark.skipif(bool(POSTGRES), reason="snapshots need the SQLite store")
def test_a_snapshot_loaded_after_changes_brings_back_exactly_the_saved_state(emu):
    tea, api = tea_client(emu), volc(emu, region="cn-beijing")
    ids = run(tea, 3)
    import_key(tea, "one")
    import_key(tea, "two")
    tea.attach_key_pair(m.AttachKeyPairRequest(region_id=REGION, key_pair_name="one", instance_ids=ids_json(ids[:2])))
    api.import_key_pair(vm.ImportKeyPairRequest(key_pair_name="volc-key", public_key=ssh_keygen()[1]))

    def seen():
        keys = tea.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION, page_size=50)).body.to_map()
        insts = tea.describe_instances(m.DescribeInstancesRequest(region_id=REGION, page_size=100)).body.to_map()
        volc_keys = api.describe_key_pairs(vm.DescribeKeyPairsRequest()).to_dict()
        for body in (keys, insts):
            body.pop("RequestId", None)
        return json.dumps([keys, insts, volc_keys], sort_keys=True)

    saved = seen()
    assert ctl(emu, "snapshot", "save", "fixture") == {"Name": "fixture"}
    tea.detach_key_pair(m.DetachKeyPairRequest(region_id=REGION, key_pair_name="one", instance_ids=ids_json(ids[:1])))
    tea.delete_key_pairs(m.DeleteKeyPairsRequest(region_id=REGION, key_pair_names=ids_json(["two"])))
    import_key(tea, "three")
    run(tea, 2)
    api.delete_key_pairs(vm.DeleteKeyPairsRequest(key_pair_names=["volc-key"]))
    assert seen() != saved
    ctl(emu, "snapshot", "load", "fixture")
    assert seen() == saved
    listed = ctl(emu, "snapshot", "list")["Snapshots"]
    assert [s["Name"] for s in listed] == ["fixture"] and listed[0]["Bytes"] > 0
    ctl(emu, "snapshot", "delete", "fixture")
    assert ctl(emu, "snapshot", "list")["Snapshots"] == []
    assert admin(emu, "snapshot", "load", "fixture").returncode != 0


def test_account_delete_removes_an_account_with_everything_in_it(emu):
    other = ctl(emu, "account", "create", "tenant-a")
    tea_other = tea_client(emu, ak=other["AccessKeyId"], sk=other["AccessKeySecret"])
    run(tea_other, 2)
    import_key(tea_other, "theirs")
    import_key(tea_client(emu), "mine")
    assert ctl(emu, "account", "delete", "tenant-a") == {"AccountId": other["AccountId"]}
    names = [a["Name"] for a in ctl(emu, "account", "list")["Accounts"]]
    assert "tenant-a" not in names
    try:
        tea_other.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION))
        raise AssertionError("the deleted account's AccessKey is gone")
    except Exception as e:
        assert "AccessKey" in e.code or e.code == "InvalidAccessKeyId.NotFound", e.code
    mine = tea_client(emu).describe_key_pairs(m.DescribeKeyPairsRequest(region_id=REGION)).body
    assert [k.key_pair_name for k in mine.key_pairs.key_pair] == ["mine"]
