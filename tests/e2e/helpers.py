"""Small helpers shared by the end-to-end tests."""

import json
import os
import subprocess
import tempfile

from conftest import AK, BINARY, REGION, SK


def sdk_error(fn):
    """Runs fn, expecting the SDK to raise; returns (HTTP status, vendor code)."""
    try:
        fn()
    except Exception as e:  # the SDKs raise their own exception classes
        status = getattr(e, "status_code", None) or getattr(e, "statusCode", None)
        if status is None and hasattr(e, "get_http_status"):
            status = e.get_http_status()
        code = getattr(e, "code", None)
        if code is None and hasattr(e, "get_error_code"):
            code = e.get_error_code()
        return status, code
    raise AssertionError("the call succeeded but an error was expected")


def admin(server, *args, ak=AK, sk=SK):
    """Runs `keyplane admin ARGS` against the server with only the given AccessKey in its env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYPLANE_", "ALIBABA_CLOUD_"))}
    env.update(KEYPLANE_ENDPOINT=server.url, KEYPLANE_ACCESS_KEY_ID=ak, KEYPLANE_ACCESS_KEY_SECRET=sk)
    return subprocess.run([BINARY, "admin", *args], env=env, capture_output=True, text=True, timeout=60)


def ssh_keygen(*args, key_type="ed25519", bits=None):
    """Generates a key with the real ssh-keygen; returns (private path, public line)."""
    d = tempfile.mkdtemp(prefix="kp-key-")
    path = os.path.join(d, "id")
    cmd = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"e2e@{key_type}", "-f", path]
    if bits:
        cmd += ["-b", str(bits)]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(path + ".pub") as f:
        return path, f.read().strip()


def md5_fingerprint(path):
    """What `ssh-keygen -E md5 -lf` prints, without the `MD5:` prefix."""
    out = subprocess.run(["ssh-keygen", "-E", "md5", "-lf", path], check=True, capture_output=True, text=True)
    return out.stdout.split()[1].removeprefix("MD5:")


def ids_json(ids):
    return json.dumps(list(ids))


def region():
    return REGION
