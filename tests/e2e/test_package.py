"""The Debian package of SPEC section 16, installed on this machine as root: its contents, then a
server and an agent run from it (as the units run them: /usr/bin/keyplane with the files in
/etc/keyplane, the server as the `keyplane` user) with a key bound on a real sshd, an upgrade over
that earlier build, remove and purge.

Runs only when KEYPLANE_PACKAGE_DEB names the package to test and KEYPLANE_PACKAGE_OLD_DEB an
earlier build of it (scripts/test.sh builds both with scripts/package.sh: the release build, and
the debug build at a lower package version). It installs and purges the package: it is for a test
machine, never a host that has keyplane installed for real."""

import grp
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest
from alibabacloud_ecs20140526 import models as m

from confinement import STRACE, Trace, group, outside
from conftest import AK, SK, TLS, Server, free_port, tea_client
from helpers import ids_json, ssh_keygen
from test_agent import Host, admin, bind, wait_state

NEW = os.environ.get("KEYPLANE_PACKAGE_DEB")
OLD = os.environ.get("KEYPLANE_PACKAGE_OLD_DEB")
R = "cn-hangzhou"

pytestmark = pytest.mark.skipif(not (NEW and OLD) or TLS,
                                reason="KEYPLANE_PACKAGE_DEB and KEYPLANE_PACKAGE_OLD_DEB (scripts/test.sh)")

CONFFILES = ["/etc/keyplane/server.toml", "/etc/keyplane/agent.toml"]
UNITS = ["/lib/systemd/system/keyplane.service", "/lib/systemd/system/keyplane-agent.service"]
STATE = "/var/lib/keyplane-agent"


@pytest.fixture(autouse=True)
def _asked_for():
    # Asked for by the test command: a machine that cannot run it is a failure, not a skip.
    assert os.geteuid() == 0 and shutil.which("dpkg"), "the package test runs as root on Debian"


def run(*cmd, check=True, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", **(env or {})})
    assert not check or out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
    return out


def apt(*args):
    # stdin closed: a conffile question would fail the step instead of waiting for an answer.
    return run("apt-get", "-q", "-y", *args)


class Systemd:
    """apt-get as on a host where systemd runs: /run/systemd/system exists (in a mount namespace of
    its own) and `systemctl` is a stub that records what the maintainer scripts ask of it."""

    def __init__(self, tmp):
        self.log = f"{tmp}/systemctl.calls"
        os.makedirs(f"{tmp}/bin")
        with open(f"{tmp}/bin/systemctl", "w") as f:
            f.write(f'#!/bin/sh\necho "$*" >>{self.log}\n')
        os.chmod(f"{tmp}/bin/systemctl", 0o755)
        # apt runs dpkg, and so the maintainer scripts, with its own PATH: the stub goes first in it.
        self.path = f"{tmp}/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    def apt(self, *args):
        """Runs `apt-get ARGS` and answers the systemctl calls it made."""
        open(self.log, "w").close()
        run("unshare", "-m", "sh", "-c",
            'mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && exec "$@"',
            "sh", "apt-get", "-q", "-y", "-o", f"DPkg::Path={self.path}", *args)
        with open(self.log) as f:
            return f.read().splitlines()


def contents(deb):
    """{path: (mode string, owner)} of the package's files."""
    files = {}
    for line in run("dpkg-deb", "-c", deb).stdout.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        files[path.removeprefix(".").split(" -> ")[0]] = (mode, owner)
    return files


def test_the_package_holds_what_spec_16_names():
    # The file's name is the contract's: keyplane_<version>_<arch>.deb, the version the binary prints.
    with tempfile.TemporaryDirectory() as d:
        run("dpkg-deb", "-x", NEW, d)
        printed = run(f"{d}/usr/bin/keyplane", "--version").stdout.split()[1]
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert os.path.basename(NEW) == f"keyplane_{printed}_{arch}.deb"
    assert version(NEW) == printed
    files = contents(NEW)
    expect = {
        "/usr/bin/keyplane": "-rwxr-xr-x",
        "/lib/systemd/system/keyplane.service": "-rw-r--r--",
        "/lib/systemd/system/keyplane-agent.service": "-rw-r--r--",
        "/etc/keyplane/server.toml": "-rw-r-----",
        "/etc/keyplane/agent.toml": "-rw-------",
        "/usr/share/bash-completion/completions/keyplane": "-rw-r--r--",
        "/usr/share/zsh/vendor-completions/_keyplane": "-rw-r--r--",
        "/usr/share/fish/vendor_completions.d/keyplane.fish": "-rw-r--r--",
        "/usr/share/man/man1/keyplane.1.gz": "-rw-r--r--",
        "/usr/share/man/man1/keyplane-serve.1.gz": "-rw-r--r--",
        "/usr/share/man/man1/keyplane-agent.1.gz": "-rw-r--r--",
        "/usr/share/doc/keyplane/INSTALL.md": "-rw-r--r--",
    }
    for path, mode in expect.items():
        assert path in files, f"{path} is missing from {sorted(files)}"
        assert files[path] == (mode, "0/0"), (path, files[path])
    assert all(owner == "0/0" for _, owner in files.values())
    assert not any(p.startswith(("/var/", "/etc/systemd/")) for p in files), \
        "data directories are made by postinst, and no unit is enabled by a symlink in the package"

    info = run("dpkg-deb", "-I", NEW).stdout
    fields = dict(line.strip().split(": ", 1) for line in info.splitlines() if line.startswith(" ") and ": " in line)
    assert fields["Package"] == "keyplane"
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    assert "libc6" in depends and "adduser" in depends, fields["Depends"]
    # Depends comes from the binary: the package of every shared library it links is named there.
    with tempfile.TemporaryDirectory() as d:
        run("dpkg-deb", "-x", NEW, d)
        needed = [line.split()[1] for line in run("objdump", "-p", f"{d}/usr/bin/keyplane").stdout.splitlines()
                  if line.strip().startswith("NEEDED")]
    assert "libc.so.6" in needed, needed
    cache = run("ldconfig", "-p").stdout
    for lib in needed:
        path = next(line.split(" => ")[1] for line in cache.splitlines() if line.strip().startswith(lib + " "))
        found = run("dpkg", "-S", path, check=False)
        if found.returncode != 0:  # merged /usr: dpkg may know the library by its other name
            found = run("dpkg", "-S", os.path.realpath(path))
        owner = found.stdout.split(":")[0]
        # cargo-deb leaves out libgcc-s1, which libc6 itself depends on: named, or pulled by one named.
        pulled = [d.strip().split()[0] for dep in depends
                  for d in run("dpkg-query", "-W", "-f", "${Depends}", dep).stdout.split(",") if d.strip()]
        assert owner in depends + pulled, f"{lib} ({owner}) is not in Depends: {fields['Depends']}"
    assert run("dpkg", "--compare-versions", version(NEW), "gt", version(OLD), check=False).returncode == 0
    with tempfile.TemporaryDirectory() as d:
        run("dpkg-deb", "-e", NEW, d)
        with open(f"{d}/conffiles") as f:
            assert sorted(f.read().split()) == sorted(CONFFILES)
        for script in ("postinst", "prerm", "postrm"):
            assert os.stat(f"{d}/{script}").st_mode & 0o111, f"{script} is executable"


class PackagedServer(Server):
    """`keyplane serve --config /etc/keyplane/server.toml` from /usr/bin as the `keyplane` user:
    what keyplane.service runs. systemd is not PID 1 here, so instead of its sandbox the server
    runs under strace, and the test checks what it did against the unit (confinement.py)."""

    def __init__(self, port):
        self.port_ = port
        super().__init__(db="sqlite:///var/lib/keyplane/keyplane.db")

    def start(self):
        self.port = self.port_
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
        env.update(KEYPLANE_ROOT_ACCESS_KEY_ID=AK, KEYPLANE_ROOT_ACCESS_KEY_SECRET=SK)
        log = open(os.path.join(self.dir, "server.log"), "ab")
        os.chmod(self.dir, 0o711)
        os.makedirs(f"{self.dir}/trace", exist_ok=True)
        os.chown(f"{self.dir}/trace", pwd.getpwnam("keyplane").pw_uid, -1)
        assert unit_setting(UNITS[0], "CapabilityBoundingSet") == ""
        assert unit_setting(UNITS[0], "WorkingDirectory") == "/var/lib/keyplane"
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid=keyplane", "--regid=keyplane", "--clear-groups", "--no-new-privs",
             "--bounding-set", "-all", *STRACE, f"{self.dir}/trace/server",
             "/usr/bin/keyplane", "serve", "--config", "/etc/keyplane/server.toml"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/var/lib/keyplane")
        self.wait_healthy()


def start_agent(trace):
    """`keyplane agent --config /etc/keyplane/agent.toml` from /usr/bin: what keyplane-agent.service
    runs, under strace (`trace` is the logs' prefix)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
    log = open(f"{trace}.log", "ab")
    # The unit's capability bounding set, for the agent and everything it runs.
    caps = ",".join("+" + c.lower().removeprefix("cap_") for c in unit_setting(UNITS[1], "CapabilityBoundingSet").split())
    return subprocess.Popen(["setpriv", "--no-new-privs", "--bounding-set", f"-all,{caps}",
                             *STRACE, trace, "/usr/bin/keyplane", "agent", "--config", "/etc/keyplane/agent.toml"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")


def unit_setting(unit, key):
    """The value of `key=` in a unit file (the last one, as systemd reads a single-valued key)."""
    values = [line.split("=", 1)[1] for line in read(unit).splitlines() if line.startswith(key + "=")]
    assert values, f"{key}= is not in {unit}"
    return values[-1]


def stop(proc):
    """SIGTERM to the traced keyplane process (strace itself would only detach), then strace ends."""
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
        children = [int(pid) for pid in f.read().split()]
    for pid in children or [proc.pid]:
        os.kill(pid, signal.SIGTERM)
    proc.wait(15)


def check_confinement(server_trace, agent_trace):
    """What the server and the agent did stays inside what their units allow."""
    server = Trace(server_trace)
    allowed = group("@system-service") - group("@privileged")
    assert server.syscalls() <= allowed, f"SystemCallFilter= would kill the server: {sorted(server.syscalls() - allowed)}"
    assert server.socket_families() <= {"AF_INET", "AF_INET6", "AF_UNIX"}, server.socket_families()
    assert not server.write_and_execute_mappings(), server.write_and_execute_mappings()
    assert not outside(server.written_paths(), ["/var/lib/keyplane"]), outside(server.written_paths(), ["/var/lib/keyplane"])

    agent = Trace(agent_trace)
    allowed = group("@system-service")
    assert agent.syscalls() <= allowed, f"SystemCallFilter= would kill the agent: {sorted(agent.syscalls() - allowed)}"
    assert agent.socket_families() <= {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}, agent.socket_families()
    # ReadWritePaths=/etc -/home -/root /var/lib/keyplane-agent; PrivateTmp= and PrivateDevices=
    # give a writable /tmp (where this test's sshd keeps its configuration) and /dev/null.
    writable = ["/etc", "/home", "/root", STATE, "/tmp", "/dev/null"]
    written = agent.written_paths()
    assert not outside(written, writable), outside(written, writable)
    assert any(p.startswith("/home/") and p.endswith("authorized_keys") for p in written), sorted(written)
    assert any(p.startswith("/etc/shadow") for p in written), f"chpasswd ran under the trace: {sorted(written)}"


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def edit(path, text):
    """Replaces a file's contents in place, as an operator's editor would (mode and owner kept)."""
    with open(path, "w") as f:
        f.write(text)


def version(deb):
    return run("dpkg-deb", "-f", deb, "Version").stdout.strip()


def installed_version():
    out = run("dpkg-query", "-W", "-f", "${Status} ${Version}", "keyplane", check=False)
    return out.stdout if out.returncode == 0 else ""


def purge_leftovers():
    """Whatever an earlier, interrupted run left: the package in any state, its directories."""
    if installed_version() and "not-installed" not in installed_version():
        run("dpkg", "--purge", "--force-remove-reinstreq", "keyplane")
    for d in ("/etc/keyplane", "/var/lib/keyplane", STATE):
        shutil.rmtree(d, ignore_errors=True)


def test_install_run_upgrade_remove_purge(tmp_path):
    purge_leftovers()
    host = Host()
    server_proc = agent = None
    try:
        # 1. The earlier build: installs, creates the user and the data directory, starts nothing.
        systemd = Systemd(tmp_path)
        assert systemd.apt("install", OLD) == ["--system daemon-reload"], "installing starts and enables nothing"
        assert installed_version() == f"install ok installed {version(OLD)}"
        user = pwd.getpwnam("keyplane")
        assert user.pw_uid < 1000 and user.pw_shell == "/usr/sbin/nologin", "a system user"
        st = os.stat("/var/lib/keyplane")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, user.pw_uid, grp.getgrnam("keyplane").gr_gid)
        st = os.stat("/etc/keyplane/server.toml")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, grp.getgrnam("keyplane").gr_gid)
        assert stat.S_IMODE(os.stat("/etc/keyplane/agent.toml").st_mode) == 0o600
        assert not [p for p in _wants() if "keyplane" in p], "nothing enabled"
        assert run("keyplane", "--version").stdout.startswith("keyplane ")
        assert "complete -F _keyplane" in run("keyplane", "completions", "bash").stdout
        loaded = run("bash", "-c", "source /usr/share/bash-completion/completions/keyplane && complete -p keyplane")
        assert "_keyplane" in loaded.stdout, loaded.stdout
        assert run("man", "-w", "keyplane-agent").stdout.strip() == "/usr/share/man/man1/keyplane-agent.1.gz"
        for unit in UNITS:
            # Also finds the man pages the units' Documentation= names.
            run("systemd-analyze", "verify", unit)

        # 2. The operator's configuration, edited in place, and the server and the agent run as
        # the units run them. A key bound with the official SDK logs in; the password does not.
        port = free_port()
        server_toml = read("/etc/keyplane/server.toml").replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
        edit("/etc/keyplane/server.toml", server_toml)
        server = PackagedServer(port)
        server_proc = server.proc
        token = admin(server, "registration-token", "create", "--region", R, "--name", "pkg-host")["Token"]
        agent_toml = (f'server = "{server.url}"\ntoken = "{token}"\nlogin_user = "{host.user}"\n'
                      f'sshd_config = "{host.config}"\nsshd_dropin_dir = "{host.dropins}"\n'
                      f'reload_command = "kill -HUP $(cat {host.dir}/sshd.pid)"\n'
                      "check_interval_secs = 1\n")
        edit("/etc/keyplane/agent.toml", agent_toml)
        agent_trace = f"{tmp_path}/agent"
        agent = start_agent(agent_trace)
        iid = _wait_file(f"{STATE}/instance-id").strip()
        credential = read(f"{STATE}/credential", "rb")
        tea = tea_client(server)
        k1, _ = bind(server, iid, "before-upgrade")
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k1) and not host.password_logs_in()
        # A rebinding waits for the instance's restart when the upgrade comes.
        k2, line2 = ssh_keygen()
        tea.import_key_pair(m.ImportKeyPairRequest(region_id=R, key_pair_name="after-upgrade", public_key_body=line2))
        tea.attach_key_pair(m.AttachKeyPairRequest(region_id=R, key_pair_name="after-upgrade", instance_ids=ids_json([iid])))
        wait_state(server, iid, "pending_restart")
        stop(agent), stop(server.proc)
        # The administrator's own owner and mode for the server's file.
        keyplane_user = pwd.getpwnam("keyplane")
        os.chown("/etc/keyplane/server.toml", keyplane_user.pw_uid, keyplane_user.pw_gid)
        os.chmod("/etc/keyplane/server.toml", 0o600)

        # 3. The upgrade: no question about the edited conffiles, which are kept with their modes.
        assert systemd.apt("install", NEW) == ["--system daemon-reload",
                                               "try-restart keyplane.service keyplane-agent.service"], \
            "an upgrade restarts what runs (try-restart starts nothing that is stopped)"
        assert installed_version() == f"install ok installed {version(NEW)}"
        assert read("/etc/keyplane/server.toml") == server_toml
        assert read("/etc/keyplane/agent.toml") == agent_toml
        st = os.stat("/etc/keyplane/server.toml")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, keyplane_user.pw_uid, keyplane_user.pw_gid), \
            "the administrator's owner and mode are kept"
        assert read(f"{STATE}/instance-id").strip() == iid
        assert read(f"{STATE}/credential", "rb") == credential
        assert host.key_logs_in(k1), "the key logs in across the upgrade"

        # 4. The new build starts on the same data and state: the same instance, the working key
        # still in effect (the upgrade restarted the agent, not the instance: the rebinding keeps
        # waiting), then the instance's restart applies the new binding with the kept credential.
        server.start()
        server_proc = server.proc
        agent = start_agent(agent_trace)
        pairs = tea.describe_key_pairs(m.DescribeKeyPairsRequest(region_id=R)).body.key_pairs.key_pair
        assert sorted(p.key_pair_name for p in pairs) == ["after-upgrade", "before-upgrade"], "the server's data is kept"
        for _ in range(100):
            if "resumed: this boot already applied this state" in read(f"{agent_trace}.log"):
                break
            time.sleep(0.1)
        time.sleep(2)  # a few checks
        wait_state(server, iid, "pending_restart", timeout=0.4)
        assert host.key_logs_in(k1) and not host.key_logs_in(k2) and not host.password_logs_in(), \
            "an upgrade changes nothing on the host"
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        for _ in range(100):
            if host.key_logs_in(k2):
                break
            time.sleep(0.2)
        wait_state(server, iid, "applied")
        assert host.key_logs_in(k2) and not host.key_logs_in(k1) and not host.password_logs_in()
        assert read(f"{STATE}/instance-id").strip() == iid
        # A password reset: chpasswd, run by the agent, writes /etc/shadow (its unit lets it).
        first_password, new_password = host.password, "Kp-Pkg-" + secrets.token_hex(5)
        host.password = new_password
        tea.modify_instance_attribute(m.ModifyInstanceAttributeRequest(instance_id=iid, password=new_password))
        tea.reboot_instance(m.RebootInstanceRequest(instance_id=iid))
        for _ in range(100):
            if host.password_logs_in():
                break
            time.sleep(0.2)
        wait_state(server, iid, "applied")
        assert host.password_logs_in() and host.key_logs_in(k2), "the key and the new password"
        host.password = first_password
        assert not host.password_logs_in(), "the old password is gone"
        host.password = new_password
        assert agent.poll() is None
        stop(agent), stop(server.proc)
        agent = server_proc = None
        check_confinement(f"{server.dir}/trace/server", agent_trace)

        # 5. Remove keeps data and configuration; what the agent made true on the host stays.
        assert systemd.apt("remove", "keyplane") == ["stop keyplane.service keyplane-agent.service",
                                                     "--system daemon-reload"]
        assert not os.path.exists("/usr/bin/keyplane")
        assert not any(os.path.exists(u) for u in UNITS)
        assert read("/etc/keyplane/server.toml") == server_toml and read("/etc/keyplane/agent.toml") == agent_toml
        assert os.path.exists("/var/lib/keyplane/keyplane.db") and read(f"{STATE}/instance-id").strip() == iid
        assert host.key_logs_in(k2) and host.password_logs_in()

        # 6. Purge deletes them, and still leaves the host as the agent made it.
        assert systemd.apt("purge", "keyplane") == ["--system daemon-reload"]
        assert installed_version() == "" or "not-installed" in installed_version()
        for gone in ("/etc/keyplane", "/var/lib/keyplane", STATE):
            assert not os.path.exists(gone), gone
        assert host.key_logs_in(k2) and host.password_logs_in(), "purging never locks anyone out"
    finally:
        for proc in (agent, server_proc):
            if proc and proc.poll() is None:
                stop(proc)
        host.close()
        purge_leftovers()


def _wants():
    base = "/etc/systemd/system"
    return [os.path.join(d, f) for d, _, fs in os.walk(base) for f in fs] if os.path.isdir(base) else []


def _wait_file(path, timeout=20):
    for _ in range(int(timeout / 0.1)):
        if os.path.exists(path):
            return read(path)
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear")
