"""The old official Python SDK (aliyun-python-sdk-core + aliyun-python-sdk-ecs), V1 signing,
JSON and Format=XML."""

import json
import xml.etree.ElementTree as ET

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkecs.request.v20140526 import (AttachKeyPairRequest, CreateKeyPairRequest, DeleteKeyPairsRequest,
                                            DescribeInstancesRequest, DescribeKeyPairsRequest, DetachKeyPairRequest,
                                            ImportKeyPairRequest, RebootInstanceRequest, RunInstancesRequest,
                                            StartInstanceRequest, StopInstanceRequest)

from conftest import CA, LINUX, WINDOWS
from helpers import ids_json, md5_fingerprint, sdk_error, ssh_keygen


def call(core, req):
    return json.loads(core.do_action_with_exception(req))


def run(core, image=LINUX, amount=1):
    req = RunInstancesRequest.RunInstancesRequest()
    req.set_ImageId(image)
    req.set_InstanceType("ecs.g7.large")
    req.set_Amount(amount)
    return call(core, req)["InstanceIdSets"]["InstanceIdSet"]


def test_import_attach_reboot_detach_with_the_old_sdk(core):
    path, line = ssh_keygen(key_type="rsa", bits=2048)
    req = ImportKeyPairRequest.ImportKeyPairRequest()
    req.set_KeyPairName("old-sdk")
    req.set_PublicKeyBody(line)
    assert call(core, req)["KeyPairFingerPrint"] == md5_fingerprint(path + ".pub")
    linux, windows = run(core)[0], run(core, WINDOWS)[0]
    req = AttachKeyPairRequest.AttachKeyPairRequest()
    req.set_KeyPairName("old-sdk")
    req.set_InstanceIds(ids_json([linux, windows]))
    body = call(core, req)
    assert (body["TotalCount"], body["FailCount"]) == ("2", "1")
    req = RebootInstanceRequest.RebootInstanceRequest()
    req.set_InstanceId(linux)
    call(core, req)
    req = DescribeInstancesRequest.DescribeInstancesRequest()
    req.set_KeyPairName("old-sdk")
    assert [i["InstanceId"] for i in call(core, req)["Instances"]["Instance"]] == [linux]
    req = DetachKeyPairRequest.DetachKeyPairRequest()
    req.set_KeyPairName("old-sdk")
    req.set_InstanceIds(ids_json([linux]))
    assert call(core, req)["FailCount"] == "0"


def test_create_describe_delete_and_stop_start(core):
    req = CreateKeyPairRequest.CreateKeyPairRequest()
    req.set_KeyPairName("old-made")
    assert call(core, req)["PrivateKeyBody"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    req = DescribeKeyPairsRequest.DescribeKeyPairsRequest()
    req.set_KeyPairName("old-*")
    assert call(core, req)["TotalCount"] == 1
    i = run(core)[0]
    for r in (StopInstanceRequest.StopInstanceRequest(), StartInstanceRequest.StartInstanceRequest()):
        r.set_InstanceId(i)
        call(core, r)
    req = DeleteKeyPairsRequest.DeleteKeyPairsRequest()
    req.set_KeyPairNames('["old-made"]')
    call(core, req)


def test_format_xml_is_served_as_xml(core):
    _, line = ssh_keygen()
    req = ImportKeyPairRequest.ImportKeyPairRequest()
    req.set_KeyPairName("xml-kp")
    req.set_PublicKeyBody(line)
    call(core, req)
    req = DescribeKeyPairsRequest.DescribeKeyPairsRequest()
    req.set_accept_format("XML")
    root = ET.fromstring(core.do_action(req))
    assert root.tag == "DescribeKeyPairsResponse"
    assert root.find("RequestId").text
    assert root.find("TotalCount").text == "1"
    assert root.find("KeyPairs/KeyPair/KeyPairName").text == "xml-kp"


def test_vendor_errors_reach_the_old_sdk_as_server_exceptions(core):
    req = AttachKeyPairRequest.AttachKeyPairRequest()
    req.set_KeyPairName("missing-kp")
    req.set_InstanceIds('["i-x"]')
    status, code = sdk_error(lambda: core.do_action_with_exception(req))
    assert (status, code) == (400, "InvalidKeyPairName.NotFound")


def test_a_wrong_secret_is_recognised_by_the_old_sdk(server):
    from aliyunsdkcore.client import AcsClient
    c = AcsClient("LTAI5tEndToEndTests01", "wrong-secret", "cn-hangzhou", verify=CA)
    c.add_endpoint("cn-hangzhou", "Ecs", server.endpoint)
    req = DescribeKeyPairsRequest.DescribeKeyPairsRequest()
    try:
        c.do_action_with_exception(req)
        raise AssertionError("expected an error")
    except ServerException as e:
        # The SDK compares our string to sign with its own and names the real cause.
        assert e.get_error_code() == "InvalidAccessKeySecret"
