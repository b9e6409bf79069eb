"""What an operator hits (issue 20): one server per SQLite file, a start that fails leaves nothing
behind, and a store that cannot be written is reported honestly (the dialect's ServiceUnavailable,
/healthz not ready) and recovers by itself. SQLite only: with PostgreSQL several servers are the
point, and a full disk is the database server's."""

import os
import socket
import sqlite3
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
from alibabacloud_ecs20140526 import models as m

from conftest import AK, BINARY, LINUX, POSTGRES, SK, Server, free_port, tea_client

pytestmark = pytest.mark.skipif(bool(POSTGRES), reason="SQLite only: the lock and the disk are SQLite's")


def serve(db, port, extra_env=None):
    env = dict(os.environ, KEYPLANE_ROOT_ACCESS_KEY_ID=AK, KEYPLANE_ROOT_ACCESS_KEY_SECRET=SK)
    env.update(extra_env or {})
    return subprocess.run([BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--db", db],
                          env=env, capture_output=True, text=True, timeout=30)


def health(server):
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_second_server_on_the_same_sqlite_file_is_refused_and_names_the_first(server):
    out = serve(server.db, free_port())
    assert out.returncode != 0
    assert f"process {server.proc.pid}" in out.stderr, out.stderr
    assert "PostgreSQL" in out.stderr
    # The first one is unaffected.
    assert health(server)[0] == 200
    server.stop()
    # Once it has stopped, the file is free again.
    server.start()
    assert health(server)[0] == 200


def test_a_start_on_a_busy_port_leaves_no_database_or_keys_behind():
    d = tempfile.mkdtemp(prefix="kp-busy-")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        out = serve(f"sqlite://{d}/data/keyplane.db", busy.getsockname()[1], {"KEYPLANE_ROOT_ACCESS_KEY_ID": ""})
    finally:
        busy.close()
    assert out.returncode != 0 and "listening on" in out.stderr, out.stderr
    assert os.listdir(d) == [], os.listdir(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (root)")
def test_a_full_disk_answers_service_unavailable_and_not_ready_then_recovers():
    mnt = tempfile.mkdtemp(prefix="kp-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], check=True)
    s = None
    try:
        s = Server(db=f"sqlite://{mnt}/keyplane.db")
        tea = tea_client(s)
        tea.create_key_pair(m.CreateKeyPairRequest(region_id="cn-hangzhou", key_pair_name="before-full"))
        filler = os.path.join(mnt, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        # Each call writes 100 instances; the store soon needs a page the disk no longer has.
        failures = []
        for i in range(100):
            run = lambda: tea.run_instances(m.RunInstancesRequest(
                region_id="cn-hangzhou", image_id=LINUX, instance_type="ecs.g7.large", amount=100))
            try:
                run()
            except Exception as e:  # the Tea SDK's own exception class
                failures.append((getattr(e, "status_code", None) or e.data.get("statusCode"), e.code))
                break
        assert failures, "100 writes of 100 instances succeeded on a full disk"
        assert failures[0] == (503, "ServiceUnavailable"), failures
        # The operator's log says why, in words.
        assert "the database cannot be written (read-only or full?)" in s.log()
        status, text = health(s)
        assert status == 503 and "not ready" in text, (status, text)
        # Reads keep working.
        names = [k.key_pair_name for k in tea.describe_key_pairs(
            m.DescribeKeyPairsRequest(region_id="cn-hangzhou")).body.key_pairs.key_pair]
        assert "before-full" in names
        # Space comes back: writes work again without a restart.
        os.remove(filler)
        tea.create_key_pair(m.CreateKeyPairRequest(region_id="cn-hangzhou", key_pair_name="after-full"))
        assert health(s)[0] == 200
        s.stop()
        db = sqlite3.connect(f"{mnt}/keyplane.db")
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            db.close()
    finally:
        if s and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        subprocess.run(["umount", mnt])


def test_the_server_raises_its_open_file_limit_to_fit_its_connections_or_says_why_not():
    """The usual soft limit of 1,024 open files would stop a server at about a thousand agents."""
    import resource
    import time

    def start(soft, hard, *args):
        d = tempfile.mkdtemp(prefix="kp-nofile-")
        port = free_port()
        env = dict(os.environ, KEYPLANE_ROOT_ACCESS_KEY_ID=AK, KEYPLANE_ROOT_ACCESS_KEY_SECRET=SK)
        log = open(os.path.join(d, "log"), "w+")
        proc = subprocess.Popen(
            [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite://{d}/k.db", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.05)
        with open(f"/proc/{proc.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max open files"))
        proc.terminate()
        proc.wait(timeout=30)
        log.seek(0)
        return int(line.split()[3]), log.read()

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < 4096:
        pytest.skip(f"this machine's hard open-file limit ({hard}) is too low to show the raise")
    soft, log = start(1024, hard)
    assert soft == min(16384 + 256, hard), log
    soft, log = start(1024, hard, "--max-connections", "100")
    assert soft == 1024, "a limit that already fits is left alone"
    soft, log = start(1024, 2048)
    assert soft == 2048 and "open-file limit is below --max-connections" in log, log
