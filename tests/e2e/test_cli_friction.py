"""What a newcomer hits first with the CLI (issue 20, friction): errors that name the endpoint and
say what to do, a typo'd parameter named, the region taken from the environment everywhere, boolean
environment variables, a --data-dir that means something, logs without colour codes off a terminal,
and `--help` texts that agree with the documentation and with what the binary does."""

import http.server
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import AK, BINARY, ROOT, SK, Server, free_port
from helpers import ssh_keygen


def run(*args, env_extra=None, timeout=60):
    """The binary with a clean environment: no KEYPLANE_* or ALIBABA_CLOUD_* but what is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYPLANE_", "ALIBABA_CLOUD_"))}
    env["HOME"] = tempfile.mkdtemp(prefix="kp-home-")
    # The CA of a TLS run stays trusted.
    if os.environ.get("KEYPLANE_CA_FILE"):
        env["KEYPLANE_CA_FILE"] = os.environ["KEYPLANE_CA_FILE"]
    env.update(env_extra or {})
    return subprocess.run([BINARY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def signed(server, **extra):
    return dict(KEYPLANE_ENDPOINT=server.url, KEYPLANE_ACCESS_KEY_ID=AK, KEYPLANE_ACCESS_KEY_SECRET=SK, **extra)


KEYS = dict(KEYPLANE_ACCESS_KEY_ID=AK, KEYPLANE_ACCESS_KEY_SECRET=SK)


def test_a_call_that_cannot_connect_names_the_endpoint_and_where_it_came_from():
    port = free_port()  # nothing listens there
    out = run("ecs", "--endpoint", f"http://127.0.0.1:{port}", "DescribeRegions", env_extra=KEYS)
    assert out.returncode == 1
    assert f"calling the keyplane server at http://127.0.0.1:{port} (--endpoint)" in out.stderr, out.stderr
    out = run("ecs", "DescribeRegions", env_extra=dict(KEYS, KEYPLANE_ENDPOINT=f"http://127.0.0.1:{port}"))
    assert f"http://127.0.0.1:{port} (KEYPLANE_ENDPOINT)" in out.stderr, out.stderr

    profile = os.path.join(tempfile.mkdtemp(), "profile.json")
    with open(profile, "w") as f:
        json.dump({"endpoint": f"http://127.0.0.1:{port}"}, f)
    out = run("ecs", "--profile", profile, "DescribeRegions", env_extra=KEYS)
    assert f"http://127.0.0.1:{port} (the profile {profile})" in out.stderr, out.stderr

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("something listens on 127.0.0.1:8080, the default endpoint")
    out = run("ecs", "DescribeRegions", env_extra=KEYS)
    assert out.returncode == 1
    assert ("calling the keyplane server at http://127.0.0.1:8080 (the default: set --endpoint or "
            "KEYPLANE_ENDPOINT)") in out.stderr, out.stderr


def test_the_default_endpoint_is_documented_where_it_is_used():
    help_text = run("ecs", "--help").stdout
    assert "http://127.0.0.1:8080" in help_text
    with open(os.path.join(ROOT, "docs", "CONFIGURATION.md")) as f:
        assert "else `http://127.0.0.1:8080`" in f.read()


def test_an_endpoint_without_a_scheme_is_refused_with_the_fix(tmp_path):
    out = run("ecs", "--endpoint", "127.0.0.1:8080", "DescribeRegions", env_extra=KEYS)
    assert out.returncode == 1
    assert "has no scheme: add https:// or http://" in out.stderr, out.stderr
    assert "http://127.0.0.1:8080" in out.stderr
    # The agent shares the rule: it stops before registering or writing anything.
    state = tmp_path / "state"
    out = run("agent", "--server", "keyplane.internal:8443", "--token", "t", "--state-dir", str(state))
    assert out.returncode == 1 and "has no scheme" in out.stderr, out.stderr
    assert not state.exists()


def test_a_profile_file_that_does_not_exist_is_an_error(server):
    missing = "/nonexistent/keyplane-profile.json"
    out = run("ecs", "--profile", missing, "DescribeRegions", env_extra=signed(server))
    assert out.returncode == 1 and missing in out.stderr and "--profile" in out.stderr, out.stderr
    out = run("ecs", "DescribeRegions", env_extra=signed(server, KEYPLANE_PROFILE=missing))
    assert out.returncode == 1 and missing in out.stderr, out.stderr
    # No profile named and none at ~/.keyplane/profile.json: the other settings are enough.
    out = run("ecs", "DescribeRegions", env_extra=signed(server))
    assert out.returncode == 0, out.stderr


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every call with an empty success and keeps the request lines."""
    seen = []

    def do_POST(self):
        Recorder.seen.append(self.path)
        body = b'{"RequestId": "R"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_unknown_parameter_warns_with_the_nearest_known_one_and_is_still_sent():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        out = run("ecs", "--endpoint", url, "--region", "cn-hangzhou", "DescribeKeyPairs",
                  "--KeyPairNmae", "web", "--PageSize", "5", env_extra=KEYS)
        assert out.returncode == 0, out.stderr
        assert ('warning: DescribeKeyPairs has no parameter "KeyPairNmae" that keyplane reads; did you '
                'mean --KeyPairName?') in out.stderr, out.stderr
        assert "PageSize" not in out.stderr, "a known parameter is not warned about"
        assert "KeyPairNmae=web" in Recorder.seen[-1], "the parameter is sent anyway, as written"

        out = run("ecs", "--endpoint", url, "--region", "cn-hangzhou", "DescribeInstances",
                  "--Tag.1.Key", "team", "--Filter.1.Key", "CreationStartTime", env_extra=KEYS)
        assert out.returncode == 0 and out.stderr == "", out.stderr
    finally:
        httpd.shutdown()


def test_a_missing_region_says_how_to_give_one(server):
    out = run("ecs", "DescribeKeyPairs", env_extra=signed(server))
    assert out.returncode == 1
    assert "MissingParameter" in out.stderr and '"RegionId"' in out.stderr
    assert "hint: give the region with --region REGION, or set KEYPLANE_REGION" in out.stderr, out.stderr
    # Other errors carry no such hint.
    out = run("ecs", "DescribeKeyPairs", "--RegionId", "mars-1", env_extra=signed(server))
    assert out.returncode == 1 and "hint:" not in out.stderr


def test_registration_token_create_and_instances_take_the_region_from_the_environment(server):
    env = signed(server, KEYPLANE_REGION="cn-beijing")
    out = run("admin", "registration-token", "create", "--name", "beijing-host", env_extra=env)
    assert out.returncode == 0, out.stderr
    token = json.loads(out.stdout)["Token"]
    body = json.dumps({"Token": token, "OsType": "linux", "OsName": "Debian", "LoginUser": "root",
                       "HostName": "beijing-host"}).encode()
    req = urllib.request.Request(f"{server.url}/agent/v1/register", data=body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        iid = json.load(r)["InstanceId"]
    out = run("admin", "instances", env_extra=env)
    assert out.returncode == 0, out.stderr
    assert [i["InstanceId"] for i in json.loads(out.stdout)["Instances"]] == [iid], "made in cn-beijing"
    # The flag still wins over the environment.
    out = run("admin", "instances", "--region", "cn-shanghai", env_extra=env)
    assert json.loads(out.stdout)["Instances"] == []

    out = run("admin", "registration-token", "create", "--name", "nowhere", env_extra=signed(server))
    assert out.returncode == 1
    assert "give --region REGION, or set KEYPLANE_REGION" in out.stderr, out.stderr


def test_admin_help_lists_every_subcommand_and_the_audit_order_it_states(server):
    text = run("admin", "--help").stdout
    for sub in ("account", "registration-token", "instances", "audit"):
        assert re.search(rf"^\s+{sub}\s+\S", text, re.M), f"{sub} is not listed with a description:\n{text}"
    assert "newest" not in text and "oldest records first" in text
    top = run("--help").stdout
    assert "accounts, registration tokens, instances and the audit log" in top
    # What the help says is what the listing does.
    _, line = ssh_keygen()
    env = signed(server, KEYPLANE_REGION="cn-hangzhou")
    assert run("ecs", "CreateKeyPair", "--KeyPairName", "made-first", env_extra=env).returncode == 0
    assert run("ecs", "ImportKeyPair", "--KeyPairName", "made-second", "--PublicKeyBody", line,
               env_extra=env).returncode == 0
    records = json.loads(run("admin", "audit", env_extra=env).stdout)["Records"]
    assert [r["Action"] for r in records][-2:] == ["CreateKeyPair", "ImportKeyPair"]


@pytest.mark.parametrize("value,json_lines", [("1", True), ("yes", True), ("true", True),
                                              ("0", False), ("no", False), ("false", False)])
def test_keyplane_log_json_takes_the_usual_boolean_words(value, json_lines):
    s = Server(env_extra={"KEYPLANE_LOG_JSON": value})
    try:
        first = s.log().splitlines()[0]
        if json_lines:
            assert json.loads(first)["level"] == "INFO"
        else:
            assert not first.startswith("{") and "INFO" in first
    finally:
        s.stop()


def test_keyplane_log_json_refuses_a_word_it_does_not_know(tmp_path):
    out = run("serve", "--listen", f"127.0.0.1:{free_port()}", "--db", f"sqlite://{tmp_path}/data/k.db",
              env_extra={"KEYPLANE_LOG_JSON": "sometimes"})
    assert out.returncode == 2 and "sometimes" in out.stderr, out.stderr
    assert not (tmp_path / "data").exists()


def serving(port, *args, env_extra=None):
    """Starts `keyplane serve ARGS`, answers the first lines of its log once /healthz on `port`
    answers, and stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYPLANE_", "ALIBABA_CLOUD_"))}
    env.update(env_extra or {})
    proc = subprocess.Popen([BINARY, "serve", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
        else:
            raise AssertionError(f"nothing answers on {port}")
    finally:
        proc.terminate()
    return proc.communicate(timeout=15)[1]


def test_serve_config_file_stands_behind_the_flags_and_the_environment(tmp_path):
    """`serve --config FILE` (/etc/keyplane/server.toml in the package): keys are the flags with
    underscores; a flag wins over the environment, which wins over the file."""
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    config = tmp_path / "server.toml"
    config.write_text(f'listen = "127.0.0.1:{file_port}"\ndb = "sqlite://{tmp_path}/data/keyplane.db"\n'
                      "log_json = true\nthrottle_per_second = 50\n")
    log = serving(file_port, "--config", str(config))
    assert json.loads(log.splitlines()[0])["level"] == "INFO", "log_json = true from the file"
    assert (tmp_path / "data" / "keyplane.db").exists()
    serving(env_port, "--config", str(config), env_extra={"KEYPLANE_LISTEN": f"127.0.0.1:{env_port}"})
    serving(flag_port, "--config", str(config), "--listen", f"127.0.0.1:{flag_port}",
            env_extra={"KEYPLANE_LISTEN": f"127.0.0.1:{env_port}"})
    # KEYPLANE_CONFIG names the file too.
    serving(file_port, env_extra={"KEYPLANE_CONFIG": str(config)})

    bad = tmp_path / "bad.toml"
    for text, code, said in [
        (f'lsten = "127.0.0.1:{free_port()}"\ndb = "sqlite://{tmp_path}/bad/k.db"', 1, "unknown key `lsten`"),
        (f'db = "sqlite://{tmp_path}/bad/k.db"\nsqlite_synchronous = "sometimes"', 2, "sometimes"),
        (f'db = "sqlite://{tmp_path}/bad/k.db"\ndb = "sqlite://{tmp_path}/bad/j.db"', 1, "duplicate key"),
        (f'db = "sqlite://{tmp_path}/bad/k.db"\nmax_connections = [1]', 1, "must be a string, an integer or a boolean"),
    ]:
        bad.write_text(text)
        out = run("serve", "--config", str(bad))
        assert out.returncode == code and said in out.stderr, (text, out.stderr)
        assert not (tmp_path / "bad").exists(), "nothing is made before the refusal"
    out = run("serve", "--config", str(tmp_path / "missing.toml"))
    assert out.returncode == 1 and "missing.toml" in out.stderr and "No such file" in out.stderr


def test_data_dir_with_sqlite_is_refused_unless_it_is_the_databases_directory(tmp_path):
    db_dir, other = tmp_path / "db", tmp_path / "elsewhere"
    out = run("serve", "--listen", f"127.0.0.1:{free_port()}", "--db", f"sqlite://{db_dir}/keyplane.db",
              "--data-dir", str(other))
    assert out.returncode == 1
    assert f"--data-dir (KEYPLANE_DATA_DIR) {other} is for PostgreSQL" in out.stderr, out.stderr
    assert f"beside the database, in {db_dir}" in out.stderr
    assert not db_dir.exists() and not other.exists(), "nothing is made before the refusal"
    # The environment variable is the same setting.
    out = run("serve", "--listen", f"127.0.0.1:{free_port()}", "--db", f"sqlite://{db_dir}/keyplane.db",
              env_extra={"KEYPLANE_DATA_DIR": str(other)})
    assert out.returncode == 1 and "is for PostgreSQL" in out.stderr
    # Naming the database's own directory (however spelled) is what happens anyway: accepted.
    db_dir.mkdir()
    s = Server(db=f"sqlite://{db_dir}/keyplane.db", env_extra={"KEYPLANE_DATA_DIR": f"{db_dir}/./"},
               root_env=False)
    try:
        assert os.path.exists(db_dir / "root-access-key.json") and os.path.exists(db_dir / "server.key")
    finally:
        s.stop()


def test_logs_carry_colour_only_on_a_terminal(server, tmp_path):
    assert "keyplane serving" in server.log()
    assert "\x1b[" not in server.log(), "a log file has no ANSI escapes"
    # The same server on a terminal is coloured: the check above can tell the difference.
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(KEYPLANE_ROOT_ACCESS_KEY_ID=AK, KEYPLANE_ROOT_ACCESS_KEY_SECRET=SK)
    proc = subprocess.Popen([BINARY, "serve", "--listen", f"127.0.0.1:{free_port()}",
                             "--db", f"sqlite://{tmp_path}/keyplane.db"],
                            env=env, stdout=child, stderr=child)
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"keyplane serving" not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 1)[0]:
                seen += os.read(main, 4096)
        assert b"keyplane serving" in seen, seen
        assert b"\x1b[" in seen, "a terminal gets colour"
    finally:
        proc.terminate()
        proc.wait(15)
        os.close(main)


def help_flags(*command):
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", run(*command, "--help").stdout, re.M)) - {"--help", "--version"}


def doc_table_flags(path, heading, column):
    """The flags in `column` (0 first) of the table under `heading` in a docs file."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    section = text[text.index(heading):]
    rows = [line for line in section[:section.index("\n\n", section.index("\n|"))].splitlines()
            if line.startswith("|")]
    return {flag for row in rows for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", row.split("|")[column + 1])}


def test_serve_help_and_configuration_md_list_the_same_settings():
    flags = help_flags("serve")
    assert flags == doc_table_flags("docs/CONFIGURATION.md", "## `keyplane serve`", 0)
    text = run("serve", "--help").stdout
    with open(os.path.join(ROOT, "docs", "CONFIGURATION.md")) as f:
        doc = f.read()
    documented_env = set(re.findall(r"KEYPLANE_[A-Z_]+", doc[doc.index("## `keyplane serve`"):doc.index("Fixed limits")]))
    for name in documented_env:
        assert name in text, f"{name} is documented but not in serve --help"
    for name in ("KEYPLANE_ROOT_ACCESS_KEY_ID", "KEYPLANE_ROOT_ACCESS_KEY_SECRET", "KEYPLANE_SERVER_KEY", "KEYPLANE_LOG"):
        assert name in text


def test_agent_help_and_agent_md_list_the_same_flags():
    # (That each flag has a description and the real default: crates/keyplane/src/agent.rs.)
    assert help_flags("agent") == doc_table_flags("docs/AGENT.md", "## Configuration", 1)


def test_sighup_never_stops_the_server(server):
    """`systemctl reload keyplane` sends SIGHUP: with TLS it reloads the certificate, without it
    there is nothing to reload, and in neither case may the server stop (SIGHUP's default)."""
    said = "reloaded the TLS certificate" if server.url.startswith("https") else "no TLS certificate to reload"
    for n in (1, 2):
        server.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if server.log().count(said) == n or server.proc.poll() is not None:
                break
            time.sleep(0.05)
        assert server.proc.poll() is None, server.log()
        assert server.log().count(said) == n, server.log()
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as r:
        assert r.status == 200
