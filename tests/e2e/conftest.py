"""Fixtures for the end-to-end tests: the real keyplane binary on a free port with a fresh store,
and clients built from the vendors' official SDKs pointed at it (nothing is mocked).

The store is SQLite, or, when KEYPLANE_E2E_POSTGRES names a PostgreSQL superuser URL, a fresh
PostgreSQL database per server (scripts/test.sh runs the suite both ways).

With KEYPLANE_E2E_TLS=1 every server serves HTTPS with a certificate from a throwaway CA
(scripts/test-certs.sh, into KEYPLANE_E2E_TLS_DIR when set), and every client trusts that CA: the SDKs through their own options, the `keyplane`
CLI and agent through KEYPLANE_CA_FILE, urllib through SSL_CERT_FILE."""

import os
import secrets
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


POSTGRES = os.environ.get("KEYPLANE_E2E_POSTGRES")
TLS = os.environ.get("KEYPLANE_E2E_TLS") == "1"
SCHEME = "https" if TLS else "http"


def make_certificates():
    """A CA and a server certificate for 127.0.0.1 signed by it (scripts/test-certs.sh, shared with
    the Node pass); returns (ca, cert, key) paths."""
    d = os.environ.get("KEYPLANE_E2E_TLS_DIR") or tempfile.mkdtemp(prefix="kp-e2e-tls-")
    if not os.path.exists(os.path.join(d, "cert.pem")):
        subprocess.run([os.path.join(ROOT, "scripts", "test-certs.sh"), d], check=True)
    return tuple(os.path.join(d, n) for n in ("ca.pem", "cert.pem", "key.pem"))


CA = CERT = KEY = None
if TLS:
    CA, CERT, KEY = make_certificates()
    # Inherited by the keyplane CLI and agent this suite starts, and read by urllib and requests.
    os.environ.update(KEYPLANE_CA_FILE=CA, SSL_CERT_FILE=CA, REQUESTS_CA_BUNDLE=CA)
    # The old SDK's requests default to HTTP, for every AcsClient a test makes.
    from aliyunsdkcore.request import set_default_protocol_type
    set_default_protocol_type("https")


def new_postgres_database():
    """A fresh database on the test cluster; returns its URL."""
    name = "kp_e2e_" + secrets.token_hex(6)
    subprocess.run(["psql", "-q", POSTGRES, "-c", f"CREATE DATABASE {name}"], check=True,
                   stdout=subprocess.DEVNULL)
    return POSTGRES.rsplit("/", 1)[0] + "/" + name


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A keyplane process; restart() stops it (SIGTERM) and starts it again on the same store."""

    def __init__(self, env_extra=None, root_env=True, db=None):
        self.root_env = root_env
        self.dir = tempfile.mkdtemp(prefix="kp-e2e-")
        if db is None:
            db = new_postgres_database() if POSTGRES else f"sqlite://{self.dir}/keyplane.db"
        self.db = db
        self.port = free_port()
        self.env_extra = env_extra or {}
        self.proc = None
        self.start()

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        """The base URL, `http://` or (KEYPLANE_E2E_TLS=1) `https://`."""
        return f"{SCHEME}://{self.endpoint}"

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_ROOT_")}
        if self.root_env:
            env.update(KEYPLANE_ROOT_ACCESS_KEY_ID=AK, KEYPLANE_ROOT_ACCESS_KEY_SECRET=SK)
        env.update(self.env_extra)
        log = open(os.path.join(self.dir, "server.log"), "ab")
        # --data-dir is PostgreSQL's: with SQLite the server's files live beside the database,
        # and a --data-dir naming another directory is refused.
        data_dir = [] if self.db.startswith("sqlite://") else ["--data-dir", self.dir]
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", self.endpoint, "--db", self.db, *data_dir,
             *(["--tls-cert", CERT, "--tls-key", KEY] if TLS else [])],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_healthy()

    def wait_healthy(self):
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
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

    def query(self, sql):
        """Rows of a query run directly on the store, as text."""
        if self.db.startswith("sqlite://"):
            import sqlite3
            db = sqlite3.connect(self.db[len("sqlite://"):])
            try:
                return [tuple(str(v) for v in row) for row in db.execute(sql).fetchall()]
            finally:
                db.close()
        out = subprocess.run(["psql", "-At", "-F", "\x1f", self.db, "-c", sql], check=True,
                             capture_output=True, text=True).stdout
        return [tuple(line.split("\x1f")) for line in out.splitlines()]

    def dump(self):
        """Every byte the store keeps: the SQLite files, or a dump of the PostgreSQL database."""
        if self.db.startswith("sqlite://"):
            data = b""
            for name in os.listdir(self.dir):
                if name.startswith("keyplane.db"):
                    with open(os.path.join(self.dir, name), "rb") as f:
                        data += f.read()
            return data
        return subprocess.run(["pg_dump", self.db], check=True, capture_output=True).stdout

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
                    endpoint=server.endpoint, protocol=SCHEME)
    if CA:
        cfg.ca = CA
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
    client = AcsClient(AK, SK, REGION, verify=CA)
    client.add_endpoint(REGION, "Ecs", server.endpoint)
    return client
