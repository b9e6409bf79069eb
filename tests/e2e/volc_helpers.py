"""Volcengine clients for the end-to-end tests: the official SDK (`volcenginesdkecs`) and, for
requests the SDK cannot produce (bad list indexes, other scopes), raw requests signed by the SDK's
own signer (`volcenginesdkcore.signv4.SignerV4`)."""

import json
import urllib.error
import urllib.parse
import urllib.request

import volcenginesdkcore
import volcenginesdkecs
from volcenginesdkcore.signv4 import SignerV4

from conftest import AK, CA, SCHEME, SK


def volc(server, region="cn-beijing", ak=AK, sk=SK, retries=True):
    cfg = volcenginesdkcore.Configuration()
    cfg.ak, cfg.sk, cfg.region = ak, sk, region
    cfg.host, cfg.scheme = server.endpoint, SCHEME
    if CA:
        cfg.ssl_ca_cert = CA
    cfg.auto_retry = retries
    return volcenginesdkecs.ECSApi(volcenginesdkcore.ApiClient(cfg))


def raw(server, action, params, region="cn-beijing", service="ecs", sk=SK, mutate_headers=None):
    """A GET signed exactly as the SDK signs; returns (HTTP status, parsed body, raw bytes)."""
    query = list(params) + [("Action", action), ("Version", "2020-04-01")]
    headers = {"Host": server.endpoint, "Content-Type": "text/plain"}
    SignerV4.sign("/", "GET", headers, "", [], query, AK, sk, region, service)
    if mutate_headers:
        mutate_headers(headers)
    url = f"{server.url}/?{urllib.parse.urlencode(query)}"
    req = urllib.request.Request(url, headers={k: v for k, v in headers.items() if k != "Host"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            return r.status, json.loads(body), body
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body), body


def error_code(body):
    return body["ResponseMetadata"]["Error"]["Code"]


def api_error(fn):
    """Runs an SDK call expected to fail; returns (HTTP status, vendor code)."""
    try:
        fn()
    except volcenginesdkcore.rest.ApiException as e:
        return e.status, json.loads(e.body)["ResponseMetadata"]["Error"]["Code"]
    raise AssertionError("the call succeeded but an error was expected")
