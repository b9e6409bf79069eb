"""The agent when things break (issue 16), against a real sshd: the server killed while the agent
waits in a long poll, the agent killed after writing a key but before its report reached the
server, a network cut mid-answer, clock jumps, and a home directory on a full disk. The host must never be locked out: the key logs in
or the password does."""

import os
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest
from alibabacloud_ecs20140526 import models as m

from conftest import free_port, tea_client
from test_agent import R, Host, admin, agent_log, bind, registered_agent, start_agent, wait_state

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd"),
                                reason="needs root and openssh-server (the test command installs it)")


@pytest.fixture
def host():
    h = Host()
    yield h
    h.close()


def agent_metric(port, series):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return None


def test_a_server_killed_under_a_long_poll_comes_back_and_the_agent_applies_what_changed(server, host):
    port = free_port()
    agent, state_dir, iid = registered_agent(server, host, "chaos-1", "--metrics-listen", f"127.0.0.1:{port}")
    try:
        k1, _ = bind(server, iid, "one")
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1)
        time.sleep(0.5)  # the agent is back in its long poll
        server.proc.kill()  # no graceful shutdown: connections cut, nothing flushed
        server.proc.wait(10)
        time.sleep(2)
        assert agent.poll() is None, "the agent keeps running"
        assert host.key_logs_in(k1) and not host.password_logs_in(), "the host keeps its state"
        server.start()
        k2, _ = bind(server, iid, "two")
        wait_state(server, iid, "applied", timeout=45)  # the agent's backoff is at most 30 s
        assert host.key_logs_in(k2) and not host.key_logs_in(k1)
        assert "the server is unreachable" in agent_log(state_dir), "it went through its backoff"
        # The agent's own metrics say so too.
        assert agent_metric(port, "keyplane_agent_reconnects_total") >= 1
        assert agent_metric(port, "keyplane_agent_server_errors_total") >= 1
        assert agent_metric(port, 'keyplane_agent_applies_total{result="ok"}') >= 2
        assert agent_metric(port, "keyplane_agent_last_apply_ok") == 1
    finally:
        agent.terminate()
        agent.wait(10)


def test_an_agent_killed_before_its_report_converges_and_reports_the_truth_at_its_next_start(server, host):
    agent, state_dir, iid = registered_agent(server, host, "chaos-2")
    try:
        key, _ = bind(server, iid, "unreported")
        # The key is written, the report cannot reach the server: stop the server at once, then
        # kill the agent as a power cut would.
        for _ in range(100):
            if os.path.exists(f"{host.home}/.ssh/authorized_keys") and "keyplane" in host.authorized_keys():
                break
            time.sleep(0.05)
        server.stop()
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert host.key_logs_in(key), "what was written holds"
        assert not host.password_logs_in(), "password login went off only with the key in place"
        server.start()
        # The next start of the agent (its state kept) converges and reports what is in effect.
        agent = start_agent(server, host, state_dir, "unused-after-registration")
        inst = wait_state(server, iid, "applied", timeout=30)
        assert inst["PasswordLogin"] is False
        assert host.key_logs_in(key)
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(10)


def test_a_full_disk_in_the_home_never_locks_the_host_out(server, host):
    agent, state_dir, iid = registered_agent(server, host, "chaos-3")
    filler = None
    try:
        k1, _ = bind(server, iid, "fits")
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1) and not host.password_logs_in()
        # The home moves to a tiny file system, kept as it was, then filled to the last byte.
        # The agent is paused meanwhile: its periodic check would otherwise see the home empty
        # for a moment, rightly, as drift.
        agent.send_signal(signal.SIGSTOP)
        saved = tempfile.mkdtemp(prefix="kp-home-")
        subprocess.run(["cp", "-a", f"{host.home}/.", saved], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", host.home], check=True)
        subprocess.run(["cp", "-a", f"{saved}/.", host.home], check=True)
        uid = int(subprocess.check_output(["id", "-u", host.user]))
        os.chown(host.home, uid, uid)
        agent.send_signal(signal.SIGCONT)
        filler = f"{host.home}/filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1k"], capture_output=True)
        before = host.authorized_keys()
        k2, _ = bind(server, iid, "does-not-fit")
        failed = wait_state(server, iid, "failed", timeout=30)
        assert "No space left" in failed["BindingError"], failed
        assert host.authorized_keys() == before, "the file is not half-written"
        assert host.key_logs_in(k1) or host.password_logs_in(), "never locked out"
        assert not host.key_logs_in(k2)
        # Space comes back: the next apply succeeds.
        os.remove(filler)
        filler = None
        tea_client(server).reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        wait_state(server, iid, "applied", timeout=30)
        assert host.key_logs_in(k2)
    finally:
        agent.terminate()
        agent.wait(10)
        subprocess.run(["umount", host.home], capture_output=True)


def libfaketime():
    import glob
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    return found[0] if found else None


@pytest.mark.skipif(libfaketime() is None, reason="needs libfaketime (the test command installs faketime)")
def test_clock_jumps_on_the_host_change_nothing(server, host):
    """The host's wall clock jumps a day ahead, then a day back, while the agent runs (libfaketime
    moves the agent's realtime clock; its monotonic clock, which times its polls and backoff, runs
    on, as it does when an operator or NTP steps a real clock). Each jump is followed by a binding
    that must apply as usual. (The jump back stops at the real time: over HTTPS the throwaway
    certificate is not yet valid before it was made, and refusing it then would be right.)"""
    offset = tempfile.NamedTemporaryFile("w", prefix="kp-clock-", delete=False)
    offset.write("+0")
    offset.close()
    env = dict(os.environ, LD_PRELOAD=libfaketime(), FAKETIME_TIMESTAMP_FILE=offset.name,
               FAKETIME_NO_CACHE="1", DONT_FAKE_MONOTONIC="1")
    port = free_port()
    agent, state_dir, iid = registered_agent(server, host, "chaos-clock", "--metrics-listen",
                                             f"127.0.0.1:{port}", env=env)

    def jump(spec):
        with open(offset.name, "w") as f:
            f.write(spec)

    def applied_at():
        return agent_metric(port, "keyplane_agent_last_apply_timestamp_seconds")

    try:
        k1, _ = bind(server, iid, "before-the-jump")
        wait_state(server, iid, "applied")
        assert abs(applied_at() - time.time()) < 60
        time.sleep(0.5)  # in its long poll
        jump("+1d")
        k2, _ = bind(server, iid, "a-day-ahead")
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k2) and not host.key_logs_in(k1)
        # The agent did live a day ahead: its own clock says so.
        assert abs(applied_at() - (time.time() + 86400)) < 60, applied_at()
        time.sleep(0.5)
        jump("+0")
        k3, _ = bind(server, iid, "a-day-back")
        wait_state(server, iid, "applied")
        assert abs(applied_at() - time.time()) < 60, applied_at()
        assert host.key_logs_in(k3) and not host.key_logs_in(k2)
        assert not host.password_logs_in()
        assert agent.poll() is None
        assert agent_metric(port, 'keyplane_agent_applies_total{result="error"}') in (None, 0)
    finally:
        agent.terminate()
        agent.wait(10)
        os.unlink(offset.name)


class CuttingProxy:
    """A TCP proxy in front of the server; while `cut` is set, each answer is cut off after its
    first bytes and the connection closed, as a network that fails mid-answer."""

    def __init__(self, target_port):
        import socket
        import threading
        self.target = target_port
        self.cut = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            self.threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, answers):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers and self.cut:
                    dst.sendall(data[:40])
                    break
                dst.sendall(data)
        except OSError:
            pass
        import socket
        for s in (src, dst):
            try:
                # shutdown, not only close: the other direction's thread is blocked in recv on
                # the same socket, and a close alone would neither wake it nor send the FIN.
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self):
        self.listener.close()


class Via:
    """The server as the agent reaches it: through the proxy."""

    def __init__(self, server, proxy):
        self.url = server.url.rsplit(":", 1)[0] + f":{proxy.port}"


def test_a_network_cut_mid_answer_changes_nothing_and_the_agent_applies_once_it_heals(server, host):
    proxy = CuttingProxy(server.port)
    token = admin(server, "registration-token", "create", "--region", R, "--name", "chaos-4")["Token"]
    state_dir = tempfile.mkdtemp(prefix="kp-agent-")
    agent = start_agent(Via(server, proxy), host, state_dir, token)
    try:
        for _ in range(100):
            if os.path.exists(f"{state_dir}/instance-id"):
                break
            time.sleep(0.1)
        iid = open(f"{state_dir}/instance-id").read().strip()
        k1, _ = bind(server, iid, "before-cut")
        wait_state(server, iid, "applied")
        before = host.authorized_keys()
        proxy.cut = True
        k2, _ = bind(server, iid, "during-cut")
        time.sleep(4)
        assert agent.poll() is None, "the agent keeps running"
        assert host.authorized_keys() == before, "a cut answer applies nothing"
        assert host.key_logs_in(k1) and not host.key_logs_in(k2)
        assert "the server is unreachable or answered badly" in agent_log(state_dir), agent_log(state_dir)
        proxy.cut = False
        wait_state(server, iid, "applied", timeout=45)
        assert host.key_logs_in(k2) and not host.key_logs_in(k1)
    finally:
        agent.terminate()
        agent.wait(10)
        proxy.close()
