"""The running contract around the API: bootstrap of an empty store, graceful shutdown, and the
`keyplane ecs` CLI with its three sources of settings."""

import json
import os
import signal
import stat
import subprocess

from alibabacloud_ecs20140526 import models as m

from conftest import AK, BINARY, SK, Server, tea_client
from helpers import ssh_keygen


def test_an_empty_store_without_a_root_key_in_the_environment_writes_one_to_a_0600_file():
    s = Server(root_env=False)
    try:
        path = os.path.join(s.dir, "root-access-key.json")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as f:
            key = json.load(f)
        assert len(key["AccountId"]) == 16 and key["AccountId"].isdigit()
        c = tea_client(s, ak=key["AccessKeyId"], sk=key["AccessKeySecret"])
        assert c.describe_regions(m.DescribeRegionsRequest()).body.regions.region
        assert key["AccessKeySecret"] not in s.log()
        s.restart()
        with open(path) as f:
            assert json.load(f) == key, "written once, on the empty store only"
        assert tea_client(s, ak=key["AccessKeyId"], sk=key["AccessKeySecret"]).describe_regions(
            m.DescribeRegionsRequest()).body.regions.region
    finally:
        s.stop()


def test_sigint_and_sigterm_shut_down_gracefully(server):
    server.stop(signal.SIGINT)
    server.start()
    server.stop(signal.SIGTERM)


def cli(args, env_extra, clear=True):
    env = {k: v for k, v in os.environ.items()
           if not (clear and (k.startswith("KEYPLANE_") or k.startswith("ALIBABA_CLOUD_")))}
    env["HOME"] = env_extra.pop("HOME", env.get("HOME", "/nonexistent"))
    env.update(env_extra)
    return subprocess.run([BINARY, "ecs", *args], env=env, capture_output=True, text=True, timeout=60)


def test_the_cli_calls_actions_and_exits_non_zero_with_the_vendor_code(server):
    env = dict(KEYPLANE_ENDPOINT=server.url, KEYPLANE_REGION="cn-hangzhou",
               KEYPLANE_ACCESS_KEY_ID=AK, KEYPLANE_ACCESS_KEY_SECRET=SK)
    _, line = ssh_keygen()
    out = cli(["ImportKeyPair", "--KeyPairName", "from-cli", "--PublicKeyBody", line], dict(env))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["KeyPairName"] == "from-cli"
    out = cli(["DescribeKeyPairs", "--KeyPairName=from-*"], dict(env))
    assert json.loads(out.stdout)["TotalCount"] == 1
    out = cli(["ImportKeyPair", "--KeyPairName", "from-cli", "--PublicKeyBody", line], dict(env))
    assert out.returncode != 0
    assert "KeyPair.AlreadyExist" in out.stderr
    out = cli(["DescribeKeyPairs", "--RegionId", "mars-1"], dict(env))
    assert out.returncode != 0 and "InvalidRegionId.NotFound" in out.stderr


def test_the_cli_reads_the_vendor_environment_and_a_profile_file(server, tmp_path):
    vendor = dict(ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)
    out = cli(["--endpoint", server.url, "--region", "cn-beijing", "DescribeZones"], vendor)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Zones"]["Zone"][0]["ZoneId"].startswith("cn-beijing")
    home = tmp_path / "home"
    (home / ".keyplane").mkdir(parents=True)
    (home / ".keyplane" / "profile.json").write_text(json.dumps({
        "endpoint": server.url, "region": "cn-shanghai",
        "access_key_id": AK, "access_key_secret": SK}))
    out = cli(["DescribeZones"], {"HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Zones"]["Zone"][0]["ZoneId"].startswith("cn-shanghai")
    out = cli(["DescribeZones"], {"HOME": str(tmp_path)})
    assert out.returncode != 0 and "AccessKey" in out.stderr


def test_access_key_secrets_are_sealed_at_rest(server):
    tea_client(server).describe_regions(m.DescribeRegionsRequest())
    server.stop()
    key_file = os.path.join(server.dir, "server.key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    dump = server.dump()
    assert AK.encode() in dump, "the dump holds the store"
    assert SK.encode() not in dump, "the secret is readable in the store"


def test_the_server_key_can_live_outside_the_data_directory_and_data_files_are_private(tmp_path):
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o700)
    key_file = key_dir / "keyplane.key"
    s = Server(env_extra={"KEYPLANE_SERVER_KEY_FILE": str(key_file)})
    try:
        tea_client(s).describe_regions(m.DescribeRegionsRequest())
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert not os.path.exists(os.path.join(s.dir, "server.key"))
        if s.db.startswith("sqlite://"):
            # The data directory existed before the server (mkdtemp): its files still are 0600,
            # whatever the umask the server was started with.
            names = [n for n in os.listdir(s.dir) if n.startswith("keyplane.db")]
            assert "keyplane.db" in names
            for name in names:
                assert stat.S_IMODE(os.stat(os.path.join(s.dir, name)).st_mode) == 0o600, name
        s.restart()
        # The same key opens the sealed secrets after a restart.
        tea_client(s).describe_regions(m.DescribeRegionsRequest())
    finally:
        s.stop()


def test_a_server_key_file_readable_by_others_is_made_private_at_start(server):
    server.stop()
    key_file = os.path.join(server.dir, "server.key")
    os.chmod(key_file, 0o644)
    server.start()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert "the server key was readable by others" in server.log()
    tea_client(server).describe_regions(m.DescribeRegionsRequest())
