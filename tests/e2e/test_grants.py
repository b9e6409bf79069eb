"""Grants (issue 18, SPEC section 15) end to end: `keyplane access` against the real server and,
for what happens on a host, the real agent with a real sshd and two real Unix users (the login
user of the vendor binding and a second user, `deploy`-like, granted a key)."""

import json
import os
import secrets
import signal
import subprocess
import time

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_ram20150501 import models as rm

from conftest import AK, BINARY, LINUX, SK, tea_client
from helpers import admin, ids_json, sdk_error, ssh_keygen
from test_agent import R, Host, registered_agent, wait_state

needs_sshd = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd"),
                                reason="needs root and openssh-server (the test command installs it)")


def access(server, *args, ak=AK, sk=SK):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYPLANE_", "ALIBABA_CLOUD_"))}
    env.update(KEYPLANE_ENDPOINT=server.url, KEYPLANE_ACCESS_KEY_ID=ak, KEYPLANE_ACCESS_KEY_SECRET=sk)
    if "KEYPLANE_CA_FILE" in os.environ:
        env["KEYPLANE_CA_FILE"] = os.environ["KEYPLANE_CA_FILE"]
    return subprocess.run([BINARY, "access", "--region", R, *args], env=env, capture_output=True, text=True,
                          timeout=60)


def ok(out):
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class TwoUsers(Host):
    """The agent's sshd host with a second real user, `other`, allowed in too."""

    def __init__(self):
        super().__init__()
        self.other = "kq" + secrets.token_hex(4)
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", self.other], check=True)
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace(f"AllowUsers {self.user}", f"AllowUsers {self.user} {self.other}"))
        self.reload()

    def reload(self):
        with open(f"{self.dir}/sshd.pid") as f:
            os.kill(int(f.read().strip()), signal.SIGHUP)
        time.sleep(0.3)

    def logs_in_as(self, user, key):
        cmd = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-i", key, "-o", "IdentitiesOnly=yes",
               "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-p", str(self.port),
               f"{user}@127.0.0.1", "true"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).returncode == 0

    def close(self):
        super().close()
        subprocess.run(["userdel", "-r", self.other], capture_output=True)


@pytest.fixture
def host():
    h = TwoUsers()
    yield h
    h.close()


def import_key(server, name):
    key, line = ssh_keygen()
    tea_client(server).import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name=name, public_key_body=line))
    return key


def wait_grant(server, grant_id, want, timeout=20):
    state = None
    for _ in range(int(timeout / 0.2)):
        grants = ok(access(server, "list"))["Grants"]
        state = next((g["State"] for g in grants if g["GrantId"] == grant_id), None)
        if state == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"grant {grant_id} is {state!r}, wanted {want!r}")


@needs_sshd
def test_a_grant_now_logs_in_for_that_user_only_and_the_vendor_key_is_unaffected(server, host):
    agent, _, iid = registered_agent(server, host, "grants-1")
    try:
        tea = tea_client(server)
        vendor = import_key(server, "vendor")
        tea.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="vendor", instance_ids=ids_json([iid])))
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        granted = import_key(server, "granted")
        out = ok(access(server, "grant", "--key-pair", "granted", "--instance-id", iid, "--os-user", host.other, "--now"))
        assert out["Failed"] == [] and len(out["Grants"]) == 1
        g = out["Grants"][0]
        assert (g["InstanceId"], g["OsUser"], g["ExpiresAt"]) == (iid, host.other, None)
        wait_grant(server, g["GrantId"], "applied")
        assert host.logs_in_as(host.other, granted), "without a restart"
        assert not host.logs_in_as(host.user, granted), "for that user only"
        assert host.key_logs_in(vendor) and not host.password_logs_in(), "the vendor binding is as it was"
        inst = tea.describe_instances(m.DescribeInstancesRequest(region_id=R, instance_ids=ids_json([iid]))).body
        assert inst.instances.instance[0].key_pair_name == "vendor", "the vendor-visible KeyPairName is unchanged"
        # Revoking the grant removes it at once; the login user keeps its key.
        assert ok(access(server, "revoke", "--grant-id", g["GrantId"])) == {"GrantId": g["GrantId"], "State": "revoked"}
        for _ in range(50):
            if not host.logs_in_as(host.other, granted):
                break
            time.sleep(0.2)
        assert not host.logs_in_as(host.other, granted)
        assert host.key_logs_in(vendor)
        actions = [r["Action"] for r in ok(admin(server, "audit", "--max", "1000"))["Records"]]
        assert "GrantAccess" in actions and "RevokeAccess" in actions
    finally:
        agent.terminate()
        agent.wait(10)


@needs_sshd
def test_revoke_key_refuses_the_key_everywhere_even_a_copy_added_by_hand(server, host):
    agent, _, iid = registered_agent(server, host, "grants-2")
    try:
        leaked = import_key(server, "leaked")
        out = ok(access(server, "grant", "--key-pair", "leaked", "--instance-id", iid, "--os-user", host.other, "--now"))
        wait_grant(server, out["Grants"][0]["GrantId"], "applied")
        # Someone appends the same key by hand to the login user's authorized_keys.
        os.makedirs(f"{host.home}/.ssh", exist_ok=True)
        with open(f"{leaked}.pub") as f:
            line = f.read()
        with open(f"{host.home}/.ssh/authorized_keys", "a") as f:
            f.write(line)
        subprocess.run(["chown", "-R", f"{host.user}:{host.user}", f"{host.home}/.ssh"], check=True)
        os.chmod(f"{host.home}/.ssh/authorized_keys", 0o600)
        assert host.logs_in_as(host.other, leaked) and host.logs_in_as(host.user, leaked)
        revoked = ok(access(server, "revoke-key", "--key-pair", "leaked"))
        assert revoked["Revoked"] is True
        for _ in range(100):
            if not host.logs_in_as(host.user, leaked):
                break
            time.sleep(0.2)
        assert not host.logs_in_as(host.user, leaked), "the copy added by hand is refused"
        assert not host.logs_in_as(host.other, leaked), "and so is the grant"
        assert host.password_logs_in(), "the host is not locked out"
        # A revoked key pair can be neither bound nor granted until it is unrevoked.
        tea = tea_client(server)
        code = sdk_error(lambda: tea.attach_key_pair(m.AttachKeyPairRequest(
            region_id=R, key_pair_name="leaked", instance_ids=ids_json([iid]))))
        assert code == (403, "KeyPairRevoked")
        again = access(server, "grant", "--key-pair", "leaked", "--instance-id", iid, "--os-user", host.other)
        assert again.returncode != 0 and "KeyPairRevoked" in again.stderr
        ok(access(server, "unrevoke-key", "--key-pair", "leaked"))
        for _ in range(100):
            if host.logs_in_as(host.user, leaked):
                break
            time.sleep(0.2)
        assert host.logs_in_as(host.user, leaked), "unrevoked: the hand-added copy works again"
    finally:
        agent.terminate()
        agent.wait(10)


@needs_sshd
def test_a_grant_for_a_user_that_does_not_exist_fails_and_creates_nothing(server, host):
    agent, _, iid = registered_agent(server, host, "grants-3")
    try:
        import_key(server, "nobody-key")
        out = ok(access(server, "grant", "--key-pair", "nobody-key", "--instance-id", iid, "--os-user", "nosuchuser", "--now"))
        wait_grant(server, out["Grants"][0]["GrantId"], "failed")
        listed = ok(access(server, "list", "--instance-id", iid))["Grants"]
        assert "nosuchuser" in listed[0]["Error"]
        assert subprocess.run(["id", "nosuchuser"], capture_output=True).returncode != 0, "no user is created"
        assert not os.path.exists("/home/nosuchuser")
    finally:
        agent.terminate()
        agent.wait(10)


@needs_sshd
def test_a_ttl_grant_is_refused_by_sshd_after_its_deadline_even_with_the_agent_stopped(server, host):
    agent, _, iid = registered_agent(server, host, "grants-4")
    try:
        key = import_key(server, "short")
        out = ok(access(server, "grant", "--key-pair", "short", "--instance-id", iid, "--os-user", host.other,
                        "--ttl", "1m", "--now"))
        g = out["Grants"][0]
        assert g["ExpiresAt"] is not None
        wait_grant(server, g["GrantId"], "applied")
        assert host.logs_in_as(host.other, key), "before the deadline"
        with open(f"/home/{host.other}/.ssh/authorized_keys") as f:
            assert 'expiry-time="' in f.read()
        agent.send_signal(signal.SIGKILL)  # the agent is gone before the deadline
        agent.wait(10)
        deadline = time.mktime(time.strptime(g["ExpiresAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        time.sleep(max(0, deadline - time.time()) + 2)
        assert not host.logs_in_as(host.other, key), "sshd refuses it by itself after the deadline"
        wait_grant(server, g["GrantId"], "expired", timeout=10)
        actions = [r["Action"] for r in ok(admin(server, "audit", "--max", "1000"))["Records"]]
        assert "GrantExpired" in actions
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(10)


def test_grants_on_simulated_instances_follow_now_and_restarts(server):
    tea = tea_client(server)
    iid = tea.run_instances(m.RunInstancesRequest(region_id=R, image_id=LINUX, instance_type="t", amount=1)).body.instance_id_sets.instance_id_set[0]
    import_key(server, "sim-key")
    now = ok(access(server, "grant", "--key-pair", "sim-key", "--instance-id", iid, "--os-user", "deploy", "--now"))
    later = ok(access(server, "grant", "--key-pair", "sim-key", "--instance-id", iid, "--instance-id", "i-missing",
                      "--os-user", "ops", "--ttl", "8h"))
    assert now["Grants"][0]["State"] == "applied"
    assert later["Grants"][0]["State"] == "pending_restart"
    assert later["Failed"] == [{"InstanceId": "i-missing", "Code": "InvalidInstanceId.NotFound",
                                "Message": "The specified instance does not exist."}]
    tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
    states = {g["OsUser"]: g["State"] for g in ok(access(server, "list"))["Grants"]}
    assert states == {"deploy": "applied", "ops": "applied"}
    # A revoked key pair is bound nowhere: not by AttachKeyPair, not at RunInstances either.
    ok(access(server, "revoke-key", "--key-pair", "sim-key"))
    assert sdk_error(lambda: tea.run_instances(m.RunInstancesRequest(
        region_id=R, image_id=LINUX, instance_type="t", amount=1, key_pair_name="sim-key"))) == (403, "KeyPairRevoked")
    assert {g["State"] for g in ok(access(server, "list"))["Grants"]} == {"revoked"}
    ok(access(server, "unrevoke-key", "--key-pair", "sim-key"))
    tea.run_instances(m.RunInstancesRequest(region_id=R, image_id=LINUX, instance_type="t", amount=1,
                                            key_pair_name="sim-key"))
    for bad in (["--os-user", "Root"], ["--os-user", "x", "--ttl", "30s"], ["--os-user", "x", "--ttl", "91d"]):
        out = access(server, "grant", "--key-pair", "sim-key", "--instance-id", iid, *bad)
        assert out.returncode != 0 and "InvalidParameter" in out.stderr, out.stderr


def test_a_policy_can_allow_granting_for_deploy_but_not_for_root(server):
    from test_ram import ram
    tea = tea_client(server)
    iid = tea.run_instances(m.RunInstancesRequest(region_id=R, image_id=LINUX, instance_type="t", amount=1)).body.instance_id_sets.instance_id_set[0]
    import_key(server, "team-key")
    r = ram(server)
    r.create_user(rm.CreateUserRequest(user_name="lead"))
    doc = {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["keyplane:GrantAccess", "keyplane:DescribeGrants"], "Resource": "*",
         "Condition": {"StringEquals": {"keyplane:OsUser": "deploy"}}},
        {"Effect": "Allow", "Action": "keyplane:DescribeGrants", "Resource": "*"}]}
    r.create_policy(rm.CreatePolicyRequest(policy_name="deploy-only", policy_document=json.dumps(doc)))
    r.attach_policy_to_user(rm.AttachPolicyToUserRequest(policy_type="Custom", policy_name="deploy-only", user_name="lead"))
    key = r.create_access_key(rm.CreateAccessKeyRequest(user_name="lead")).body.access_key
    as_lead = dict(ak=key.access_key_id, sk=key.access_key_secret)
    ok(access(server, "grant", "--key-pair", "team-key", "--instance-id", iid, "--os-user", "deploy", **as_lead))
    refused = access(server, "grant", "--key-pair", "team-key", "--instance-id", iid, "--os-user", "root", **as_lead)
    assert refused.returncode != 0 and "Forbidden.RAM" in refused.stderr
    assert [g["OsUser"] for g in ok(access(server, "list", **as_lead))["Grants"]] == ["deploy"]
