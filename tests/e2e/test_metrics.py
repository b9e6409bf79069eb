"""Prometheus metrics (SPEC section 11): `keyplane serve --metrics-listen ADDR` (here through its
environment variable) serves GET /metrics on a listener of its own, counting what the official SDK
called, by dialect, action and result code."""

import ssl
import urllib.error
import urllib.request

import pytest
from alibabacloud_ecs20140526 import models as m
from Tea.exceptions import TeaException

from conftest import CA, Server, free_port, tea_client


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        return r.read().decode()


def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def test_metrics_listen_counts_the_sdks_calls_on_its_own_port():
    port = free_port()
    s = Server(env_extra={"KEYPLANE_METRICS_LISTEN": f"127.0.0.1:{port}"})
    try:
        c = tea_client(s)
        for _ in range(3):
            c.describe_regions(m.DescribeRegionsRequest())
        with pytest.raises(TeaException):
            c.describe_key_pairs(m.DescribeKeyPairsRequest(region_id="xx-nowhere-1"))
        text = scrape(port)
        calls = 'keyplane_calls_total{dialect="aliyun",action="%s",result="%s"}'
        assert value(text, calls % ("DescribeRegions", "OK")) == 3, text
        assert value(text, calls % ("DescribeKeyPairs", "InvalidRegionId.NotFound")) == 1, text
        count = 'keyplane_call_duration_seconds_count{dialect="aliyun",action="DescribeRegions"}'
        assert value(text, count) == 3
        assert value(text, "keyplane_store_up") == 1
        assert value(text, 'keyplane_bindings{state="applied"}') == 0
        # The API's own port does not expose them.
        tls = ssl.create_default_context(cafile=CA) if CA else None
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{s.url}/metrics", timeout=5, context=tls)
        assert e.value.code == 404
    finally:
        s.stop()
