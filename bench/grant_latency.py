"""Issue 18's latency target: from a `keyplane access grant --now` call to the key logging in over
SSH, with one host (a real sshd and the real agent), p50/p99 over N grants. Needs root (a user is
created, sshd runs) and the test dependencies (`./scripts/test.sh` installs them):

    sudo .venv/bin/python bench/grant_latency.py --grants 50 [--keyplane target/release/keyplane]

Each grant is of a fresh key pair to the second user, with `--now`; the clock starts before the
CLI is run and stops at the first successful `ssh … true` (tried back to back, so the figure
includes one SSH handshake, about 50 ms here). Results go to docs/BENCHMARKS.md by hand."""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=50)
    ap.add_argument("--keyplane", default=os.path.join(ROOT, "target", "release", "keyplane"))
    args = ap.parse_args()
    os.environ["KEYPLANE_BIN"] = os.path.abspath(args.keyplane)
    import conftest
    conftest.BINARY = os.environ["KEYPLANE_BIN"]
    import helpers
    import test_agent
    import test_grants
    for mod in (helpers, test_agent, test_grants):
        mod.BINARY = conftest.BINARY
    from test_grants import TwoUsers, access, import_key, ok
    from test_agent import registered_agent

    server, host = conftest.Server(), TwoUsers()
    agent = None
    try:
        agent, _, iid = registered_agent(server, host, "bench-grants")
        took = []
        for n in range(args.grants):
            key = import_key(server, f"bench-{n}")
            started = time.monotonic()
            ok(access(server, "grant", "--key-pair", f"bench-{n}", "--instance-id", iid,
                      "--os-user", host.other, "--now"))
            while not host.logs_in_as(host.other, key):
                if time.monotonic() - started > 30:
                    raise SystemExit(f"grant {n} never logged in")
            took.append(time.monotonic() - started)
        # What one SSH login costs by itself, with a key already in place: the floor of the figure.
        alone = []
        for _ in range(20):
            started = time.monotonic()
            assert host.logs_in_as(host.other, key)
            alone.append(time.monotonic() - started)
        took.sort()
        p = lambda q: took[min(len(took) - 1, int(q * len(took)))]
        print(f"grants: {len(took)}  p50: {p(0.5) * 1000:.0f} ms  p99: {p(0.99) * 1000:.0f} ms  "
              f"max: {took[-1] * 1000:.0f} ms  mean: {statistics.mean(took) * 1000:.0f} ms; "
              f"one SSH login alone: median {statistics.median(alone) * 1000:.0f} ms")
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        host.close()
        server.proc.terminate()
        server.proc.wait(15)


if __name__ == "__main__":
    main()
