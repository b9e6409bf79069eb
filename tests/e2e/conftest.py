"""Fixtures for the end-to-end tests: the real keyplane binary on a free port with a fresh SQLite
store, and clients built from the vendors' official SDKs pointed at it (nothing is mocked)."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("KEYPLANE_BIN", os.path.join(ROOT, "target", "debug", "keyplane"))
AK, SK = "LTAI5tEndToEndTests01", "end-to-end-secret-value"
REGION = "cn-hangzhou"

LINUX = "aliyun_3_x64_20G_alibase_20240819.vhd"
WINDOWS = "win2022_21H2_x64_dtc_en-us_40G_alibase_20240816.vhd"
NO_AGENT = "centos_7_9_x64_20G_noagent_20200101.vhd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A keyplane process; restart() stops it (SIGTERM) and starts it again on the same store."""

    def __init__(self, env_extra=None, root_env=True):
        self.root_env = root_env
        self.dir = tempfile.mkdtemp(prefix="kp-e2e-")
        self.port = free_port()
        self.env_extra = env_extra or {}
        self.proc = None
        self.start()

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_ROOT_")}
        if self.root_env:
            env.update(KEYPLANE_ROOT_ACCESS_KEY_ID=AK, KEYPLANE_ROOT_ACCESS_KEY_SECRET=SK)
        env.update(self.env_extra)
        log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", self.endpoint, "--db", f"sqlite://{self.dir}/keyplane.db"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"keyplane exited {self.proc.returncode}: see {self.dir}/server.log")
                time.sleep(0.05)
        raise RuntimeError("keyplane did not become healthy")

    def stop(self, sig=None):
        if sig is None:
            self.proc.terminate()
        else:
            self.proc.send_signal(sig)
        assert self.proc.wait(15) == 0, "graceful shutdown exits 0"

    def restart(self):
        self.stop()
        self.start()

    def log(self):
        with open(os.path.join(self.dir, "server.log"), encoding="utf-8", errors="replace") as f:
            return f.read()


@pytest.fixture
def server():
    s = Server()
    yield s
    if s.proc.poll() is None:
        s.proc.terminate()
        s.proc.wait(15)


def tea_client(server, v1=False, ak=AK, sk=SK):
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi import models as om
    cfg = om.Config(access_key_id=ak, access_key_secret=sk, region_id=REGION,
                    endpoint=server.endpoint, protocol="http")
    if v1:
        cfg.signature_algorithm = "v2"
    return Client(cfg)


@pytest.fixture
def tea(server):
    """The current official SDK, default V3 ACS3-HMAC-SHA256 signing."""
    return tea_client(server)


@pytest.fixture
def tea_v1(server):
    """The current official SDK with signature_algorithm='v2' (V1 HMAC-SHA1)."""
    return tea_client(server, v1=True)


@pytest.fixture
def core(server):
    """The old official SDK (aliyun-python-sdk-core), V1 signing."""
    from aliyunsdkcore.client import AcsClient
    client = AcsClient(AK, SK, REGION)
    client.add_endpoint(REGION, "Ecs", server.endpoint)
    return client
