#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into fuzz/corpus/<target>/seed-*.

Requests come from what the official SDKs sent (../shared/wire: the signature test vectors, signed
with `testsecret`, and the captures); the rest from the product's own examples. Run it again after
the wire captures change; the files are committed, so the test suite never needs ../shared.
"""
import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent
WIRE = ROOT.parent.parent / "shared" / "wire"


def request_text(method, target, headers, body):
    head = "".join(f"{n}: {v}\n" for n, v in headers)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return f"{method} {target}\n{head}\n{body or ''}"


def requests():
    """(scheme, text) of every captured or vector request."""
    out = []
    vectors = json.loads((WIRE / "alibaba" / "test_vectors.json").read_text())
    for v in vectors["wire_vectors"]:
        h = v["http"]
        out.append(("alibaba", request_text(h["method"], h["target"], h["headers"], h.get("body"))))
    for f in sorted((WIRE / "alibaba" / "captures").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            c = json.loads(line)
            out.append(("alibaba", request_text(c["method"], c["raw_path"], c["headers"], c.get("body"))))
    for v in json.loads((WIRE / "volcengine" / "test_vectors.json").read_text()):
        if "wire" not in v:  # a signer's function vector, not a request
            continue
        w = v["wire"]
        out.append(("volc", request_text(w["method"], w["request_target"], w["headers"], w.get("body"))))
    for f in sorted((WIRE / "volcengine").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            c = json.loads(line)
            out.append(("volc", request_text(c["method"], c["raw_path"], c["headers"], c.get("body"))))
    return out


def write(target, seeds):
    d = ROOT / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for i, s in enumerate(dict.fromkeys(seeds)):
        (d / f"seed-{i:03}").write_bytes(s.encode() if isinstance(s, str) else s)


def main():
    reqs = requests()
    alibaba = [t for s, t in reqs if s == "alibaba"]
    write("alibaba_v3", [t for t in alibaba if "\nauthorization:" in t.lower()])
    write("alibaba_v1", [t for t in alibaba if "Signature=" in t])
    write("volcengine", [t for s, t in reqs if s == "volc"])
    queries = [t.split("\n", 1)[0].split("?", 1)[-1] for _, t in reqs]
    bodies = [t.split("\n\n", 1)[1] for _, t in reqs if t.split("\n\n", 1)[1]]
    write("form", queries + bodies + ["a=%zz&b", "=&&=", "k=%E4%B8%AD"])
    write("json_list", ['["i-1","i-2"]', '[" i-1 ","i-1"]', "[]", '[""]', '["a",1]', '["\\u0000"]',
                        '[' + ",".join(f'"i-{n}"' for n in range(60)) + ']', "null", '["x"] ['])
    write("name_list", [q for s, q in zip([s for s, _ in reqs], queries) if s == "volc"]
          + ["InstanceIds.1=a&InstanceIds.3=b", "InstanceIds.1=&KeyPairNames.101=x", "Tags.1.Key=k&Tags.1.Value=v"])
    keys = [(WIRE / "alibaba" / n).read_text() for n in ("k_ed.pub", "k_rsa.pub")]
    rfc4716 = ("---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"test\"\n"
               + keys[0].split()[1] + "\n---- END SSH2 PUBLIC KEY ----\n")
    write("public_key", keys + [rfc4716, "ssh-ed25519 AAAA", "ssh-rsa AAAAB3NzaC1yc2E= x"])
    docs = [
        '{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
        '{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:AttachKeyPair","ecs:Describe*"],'
        '"Resource":["acs:ecs:*:*:instance/i-abc*","acs:ecs:*:*:keypair/deploy"],'
        '"Condition":{"IpAddress":{"acs:SourceIp":["10.0.0.0/8","2001:db8::/32"]},'
        '"DateLessThan":{"acs:CurrentTime":"2027-01-01T00:00:00Z"}}}]}',
        '{"Version":"1","Statement":[{"Effect":"Deny","Action":"ram:*","Resource":"acs:ram:*:*:user/?a*"}]}',
    ]
    write("ram_policy", docs)
    begin = "# BEGIN keyplane managed key (do not edit: changes are reported as drift)"
    end = "# END keyplane managed key"
    k = keys[0].strip()
    write("authorized_keys", [
        f"{k}\n",
        f"{k}\nssh-rsa AAAA hand@laptop\n",
        f"{k}\n# mine\r\nssh-rsa AAAA a\n{begin}\nold-key\n{end}\n\n\nlast\n",
        f"not-a-key\n{begin}\n{begin}\nx\n{end}\n{end}\ntail",
        f"{k}\n{end}\nstray\n{begin}\nunclosed\n",
    ])
    sshd = ["Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n",
            "# BEGIN keyplane managed block (password login)\nPasswordAuthentication no\n"
            "# END keyplane managed block\nMatch User x\n  PasswordAuthentication yes\n"]
    try:
        sshd.append(pathlib.Path("/etc/ssh/sshd_config").read_text())
    except OSError:
        pass
    write("sshd_config", sshd)


if __name__ == "__main__":
    main()
