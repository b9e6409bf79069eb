"""The guest agent against a real OpenSSH server: a real sshd on a loopback port with its own
config and host keys, a real Unix user with a password, the keyplane server, and `keyplane agent`
pointed at that sshd's files. Needs root (useradd, sshd); the test command runs as root in CI."""

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time

import pytest
import volcenginesdkecs as ve
from alibabacloud_ecs20140526 import models as m

from conftest import AK, BINARY, SK, tea_client
from helpers import ids_json, ssh_keygen
from volc_helpers import volc

R = "cn-hangzhou"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd"),
                                reason="needs root and openssh-server (the test command installs it)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Host:
    """A user with a password, and an sshd of our own that lets only that user in."""

    def __init__(self):
        self.user = "kp" + secrets.token_hex(4)
        self.password = "Pw-" + secrets.token_hex(8)
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", self.user], check=True)
        subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}", text=True, check=True)
        self.home = f"/home/{self.user}"
        self.dir = tempfile.mkdtemp(prefix="kp-sshd-")
        os.chmod(self.dir, 0o755)
        self.dropins = f"{self.dir}/sshd_config.d"
        os.mkdir(self.dropins)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{self.dir}/hostkey"], check=True)
        self.port = free_port()
        self.config = f"{self.dir}/sshd_config"
        with open(self.config, "w") as f:
            # The Include comes first: sshd keeps the first value it reads, so the drop-in wins.
            f.write(f"Include {self.dropins}/*.conf\nPort {self.port}\nListenAddress 127.0.0.1\n"
                    f"HostKey {self.dir}/hostkey\nPidFile {self.dir}/sshd.pid\nAllowUsers {self.user}\n"
                    "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM yes\n"
                    "AuthorizedKeysFile .ssh/authorized_keys\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", self.config, "-E", f"{self.dir}/sshd.log"])
        for _ in range(100):
            if os.path.exists(f"{self.dir}/sshd.pid"):
                break
            time.sleep(0.05)

    def _ssh(self, extra, auth):
        cmd = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
               "-o", "LogLevel=ERROR", *auth, "-p", str(self.port), f"{self.user}@127.0.0.1", "true"]
        return subprocess.run(extra + cmd, capture_output=True, text=True, timeout=30).returncode == 0

    def key_logs_in(self, key):
        return self._ssh([], ["-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no"])

    def password_logs_in(self):
        return self._ssh(["sshpass", "-p", self.password],
                         ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"])

    def authorized_keys(self):
        with open(f"{self.home}/.ssh/authorized_keys") as f:
            return f.read()

    def close(self):
        self.sshd.terminate()
        self.sshd.wait(10)
        subprocess.run(["userdel", "-r", self.user], capture_output=True)


def admin(server, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYPLANE_", "ALIBABA_CLOUD_"))}
    env.update(KEYPLANE_ENDPOINT=server.url, KEYPLANE_ACCESS_KEY_ID=AK, KEYPLANE_ACCESS_KEY_SECRET=SK)
    out = subprocess.run([BINARY, "admin", *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def host():
    h = Host()
    yield h
    h.close()


def start_agent(server, host, state_dir, token, *extra, env=None):
    return subprocess.Popen(
        [BINARY, "agent", "--server", server.url, "--token", token, "--state-dir", state_dir,
         "--login-user", host.user, "--sshd-config", host.config, "--sshd-dropin-dir", host.dropins,
         "--sshd-bin", "/usr/sbin/sshd", "--reload-command", f"kill -HUP $(cat {host.dir}/sshd.pid)",
         "--check-interval", "1", *extra],
        stdout=subprocess.PIPE, stderr=open(f"{state_dir}.log", "wb"), text=True, env=env)


def bind(server, iid, name):
    """Imports a new key as `name`, attaches it to `iid` and reboots: the binding to apply."""
    tea = tea_client(server)
    key, line = ssh_keygen()
    tea.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name=name, public_key_body=line))
    tea.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name=name, instance_ids=ids_json([iid])))
    tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
    return key, line


def wait_state(server, instance_id, want, timeout=15):
    state = None
    for _ in range(int(timeout / 0.2)):
        inst = admin(server, "instances", "--instance", instance_id)["Instances"][0]
        state = inst["BindingState"]
        if state == want:
            return inst
        time.sleep(0.2)
    raise AssertionError(f"binding state {state!r}, wanted {want!r}")


def test_a_binding_becomes_true_on_a_real_sshd(server, host):
    token = admin(server, "registration-token", "create", "--region", R, "--name", "web-1")["Token"]
    state_dir = tempfile.mkdtemp(prefix="kp-agent-")
    agent = start_agent(server, host, state_dir, token)
    try:
        for _ in range(100):
            if os.path.exists(f"{state_dir}/instance-id"):
                break
            time.sleep(0.1)
        iid = open(f"{state_dir}/instance-id").read().strip()
        assert oct(os.stat(f"{state_dir}/credential").st_mode & 0o777) == "0o600"
        tea = tea_client(server)
        inst = tea.describe_instances(m.DescribeInstancesRequest(region_id=R, instance_ids=ids_json([iid]))).body.instances.instance[0]
        assert (inst.instance_name, inst.ostype, inst.status) == ("web-1", "linux", "Running")
        assert [i.instance_id for i in volc(server, region=R).describe_instances(ve.DescribeInstancesRequest()).instances] == [iid]
        assert host.password_logs_in(), "before any binding the password works"

        k1, line1 = ssh_keygen()
        tea.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="first", public_key_body=line1))
        r = tea.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="first", instance_ids=ids_json([iid]))).body
        assert r.fail_count == "0"
        wait_state(server, iid, "pending_restart")
        assert not host.key_logs_in(k1), "not before the restart"

        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1)
        assert not host.password_logs_in(), "binding turns password login off"

        # The server goes away and comes back: the host keeps its state and the agent reconnects.
        server.stop()
        time.sleep(1.5)
        assert agent.poll() is None, "the agent keeps running"
        assert host.key_logs_in(k1) and not host.password_logs_in()
        server.start()
        st = os.stat(f"{host.home}/.ssh")
        assert oct(st.st_mode & 0o777) == "0o700" and st.st_uid == int(subprocess.check_output(["id", "-u", host.user]))
        assert oct(os.stat(f"{host.home}/.ssh/authorized_keys").st_mode & 0o777) == "0o600"

        hand, hand_line = ssh_keygen()
        with open(f"{host.home}/.ssh/authorized_keys", "a") as f:
            f.write(hand_line + "\n")
        k2, line2 = ssh_keygen()
        tea.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="second", public_key_body=line2))
        tea.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="second", instance_ids=ids_json([iid])))
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k2) and not host.key_logs_in(k1), "the second key replaces the first"
        assert host.key_logs_in(hand), "a key added by hand is kept"

        tea.detach_key_pair(m.DetachKeyPairRequest(region_id=R, key_pair_name="second", instance_ids=ids_json([iid])))
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "none")
        assert not host.key_logs_in(k2)
        assert host.password_logs_in(), "detach turns password login on again"
        assert host.key_logs_in(hand)

        # An edit by hand of the managed section is drift. (This time through the Volcengine SDK.)
        v = volc(server, region=R)
        v.attach_key_pair(ve.AttachKeyPairRequest(key_pair_name="second", instance_ids=[iid]))
        wait_state(server, iid, "pending_restart")
        v.reboot_instance(ve.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        text = host.authorized_keys().replace(line2.split()[1], line1.split()[1])
        with open(f"{host.home}/.ssh/authorized_keys", "w") as f:
            f.write(text)
        drifted = wait_state(server, iid, "drifted")
        assert "instead of what was applied" in drifted["BindingError"]

        # A configuration sshd refuses: the apply fails, the last good files stay, sshd keeps running.
        with open(f"{host.dropins}/50-broken.conf", "w") as f:
            f.write("ThisIsNotAnSshdDirective yes\n")
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        failed = wait_state(server, iid, "failed")
        assert "sshd -t failed" in failed["BindingError"]
        assert host.sshd.poll() is None and host.key_logs_in(k2), "sshd still runs with the last good config"
        os.remove(f"{host.dropins}/50-broken.conf")
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
    finally:
        agent.terminate()
        agent.wait(10)


def registered_agent(server, host, name, *extra, env=None):
    token = admin(server, "registration-token", "create", "--region", R, "--name", name)["Token"]
    state_dir = tempfile.mkdtemp(prefix="kp-agent-")
    agent = start_agent(server, host, state_dir, token, *extra, env=env)
    for _ in range(100):
        if os.path.exists(f"{state_dir}/instance-id"):
            break
        time.sleep(0.1)
    return agent, state_dir, open(f"{state_dir}/instance-id").read().strip()


def agent_log(state_dir):
    with open(f"{state_dir}.log", encoding="utf-8", errors="replace") as f:
        return f.read()


def test_a_restart_of_the_agent_is_not_a_boot_a_pending_change_keeps_waiting(server, host):
    """An agent restarted in the same boot (a package upgrade, a crash, `systemctl restart`) leaves
    a detach that waits for the instance's restart waiting: the working key keeps logging in. A
    boot of the host (another kernel boot ID) applies it."""
    agent, state_dir, iid = registered_agent(server, host, "restart-1")
    try:
        tea = tea_client(server)
        k1, _ = bind(server, iid, "rs-key")
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1) and not host.password_logs_in()
        tea.detach_key_pair(m.DetachKeyPairRequest(region_id=R, key_pair_name="rs-key", instance_ids=ids_json([iid])))
        wait_state(server, iid, "pending_restart")
        agent.terminate()
        agent.wait(10)
        agent = start_agent(server, host, state_dir, "unused-after-registration")
        time.sleep(3)  # its first poll and a few checks
        wait_state(server, iid, "pending_restart", timeout=0.4)
        assert host.key_logs_in(k1) and not host.password_logs_in(), "nothing changed on the host"
        assert "resumed: this boot already applied this state" in agent_log(state_dir)
        assert agent.poll() is None
        # The host boots: the kernel's boot ID changes, which the test can only write in the record.
        agent.terminate()
        agent.wait(10)
        with open(f"{state_dir}/applied") as f:
            boot, rest = f.read().split(" ", 1)
        with open(f"{state_dir}/applied", "w") as f:
            f.write(f"00000000-0000-0000-0000-000000000000 {rest}")
        agent = start_agent(server, host, state_dir, "unused-after-registration")
        wait_state(server, iid, "none")
        assert not host.key_logs_in(k1) and host.password_logs_in()
        with open(f"{state_dir}/applied") as f:
            assert f.read().startswith(boot + " "), "the new boot's apply is remembered"
    finally:
        agent.terminate()
        agent.wait(10)


def test_keys_only_applies_the_key_leaves_sshd_alone_and_says_so(server, host):
    """--keys-only: `applied` means the key is in place where sshd accepts it; password login is not
    the agent's to change, the log says how sshd has it, and checks do not call that drift."""
    agent, state_dir, iid = registered_agent(server, host, "keys-only-1", "--keys-only")
    try:
        tea = tea_client(server)
        k1, line1 = ssh_keygen()
        tea.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="ko-key", public_key_body=line1))
        tea.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="ko-key", instance_ids=ids_json([iid])))
        wait_state(server, iid, "pending_restart")
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1)
        assert host.password_logs_in(), "sshd's password login is left as it was"
        assert os.listdir(host.dropins) == [], "no sshd file is written"
        log = agent_log(state_dir)
        assert "keys only: the key is in place; password login is not managed (--keys-only)" in log, log
        assert 'sshd_password_login="on"' in log and 'binding_password_login="off"' in log, log
        assert "\x1b[" not in log, "a log file has no colour codes"

        # A change waiting for the restart is not drift, through several checks (every second).
        tea.detach_key_pair(m.DetachKeyPairRequest(region_id=R, key_pair_name="ko-key", instance_ids=ids_json([iid])))
        wait_state(server, iid, "pending_restart")
        time.sleep(3)
        wait_state(server, iid, "pending_restart", timeout=0.4)
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "none")
        assert not host.key_logs_in(k1) and host.password_logs_in()

        # A managed key edited by hand is still drift.
        tea.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="ko-key", instance_ids=ids_json([iid])))
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        k2, line2 = ssh_keygen()
        text = host.authorized_keys().replace(line1.split()[1], line2.split()[1])
        with open(f"{host.home}/.ssh/authorized_keys", "w") as f:
            f.write(text)
        wait_state(server, iid, "drifted")
    finally:
        agent.terminate()
        agent.wait(10)


def test_a_password_reset_lets_key_and_password_log_in_side_by_side(server, host):
    """The console guide's last note: after a key pair is bound, reset the password, restart, and
    both the key and the new password work; after a detach, the password still does."""
    agent, state_dir, iid = registered_agent(server, host, "pw-1")
    first_password = host.password
    ali_password, volc_password = "Kp-Reset-" + secrets.token_hex(5), "Volc-Pw-" + secrets.token_hex(5)
    try:
        tea = tea_client(server)
        k1, _ = bind(server, iid, "pw-key")
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1) and not host.password_logs_in(), "bound: the password is refused"

        tea.modify_instance_attribute(m.ModifyInstanceAttributeRequest(instance_id=iid, password=ali_password))
        wait_state(server, iid, "pending_restart")
        host.password = ali_password
        time.sleep(1.5)  # an agent check or two: nothing is applied before the restart
        assert not host.password_logs_in(), "before the restart the old state holds"
        assert host.key_logs_in(k1)

        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1), "the key still logs in"
        assert host.password_logs_in(), "and so does the new password"
        host.password = first_password
        assert not host.password_logs_in(), "the old password is gone"

        # The same through the Volcengine SDK; then a detach: the password stays, the key goes.
        v = volc(server, region=R)
        v.modify_instance_attribute(ve.ModifyInstanceAttributeRequest(instance_id=iid, password=volc_password))
        wait_state(server, iid, "pending_restart")
        v.reboot_instance(ve.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        host.password = volc_password
        assert host.password_logs_in() and host.key_logs_in(k1)

        tea.detach_key_pair(m.DetachKeyPairRequest(region_id=R, key_pair_name="pw-key", instance_ids=ids_json([iid])))
        wait_state(server, iid, "pending_restart")
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied")
        assert host.password_logs_in(), "after a detach the password still works"
        assert not host.key_logs_in(k1), "and the key does not"
    finally:
        agent.terminate()
        agent.wait(10)

    # Neither plaintext is anywhere keyplane writes: the store (with its audit log), the server's
    # log, the agent's log, the audit listing.
    audit = json.dumps(admin(server, "audit", "--action", "ModifyInstanceAttribute"))
    assert '"ModifyInstanceAttribute"' in audit
    with open(f"{state_dir}.log", "rb") as f:
        agent_log = f.read()
    places = {"store": server.dump(), "server log": server.log().encode(), "agent log": agent_log,
              "audit": audit.encode()}
    assert len(places["store"]) > 10_000
    for pw in (ali_password, volc_password):
        for where, data in places.items():
            assert pw.encode() not in data, f"{pw} found in the {where}"
    rows = server.query(f"SELECT password_hash FROM instances WHERE id = '{iid}'")
    assert rows[0][0].startswith("$6$"), rows
