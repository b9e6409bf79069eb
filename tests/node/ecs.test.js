// End-to-end test with the official Alibaba Node SDK (@alicloud/ecs20140526): Import, Run,
// Attach, Describe, Detach against the real keyplane binary, V3 and V1 signatures.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Ecs = require('@alicloud/ecs20140526');
const { $OpenApiUtil } = require('@alicloud/openapi-core');

const { SCHEME, startServer: start } = require('./server');
const AK = 'LTAI5tNodeEndToEnd01';
const SK = 'node-end-to-end-secret';


function client(port, v1) {
  const config = new $OpenApiUtil.Config({
    accessKeyId: AK, accessKeySecret: SK, regionId: 'cn-hangzhou', endpoint: `127.0.0.1:${port}`, protocol: SCHEME,
  });
  if (v1) config.signatureAlgorithm = 'v2';
  return new Ecs.default(config);
}

function sshKey() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kp-node-key-'));
  const key = path.join(dir, 'id');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'node@e2e', '-f', key]);
  const md5 = execFileSync('ssh-keygen', ['-E', 'md5', '-lf', `${key}.pub`]).toString().split(' ')[1].replace('MD5:', '');
  return { line: fs.readFileSync(`${key}.pub`, 'utf8').trim(), md5 };
}

for (const v1 of [false, true]) {
  test(`import, attach, describe and detach with the Node SDK (${v1 ? 'V1' : 'V3'})`, async () => {
    const { port, proc } = await start(AK, SK);
    try {
      const c = client(port, v1);
      const key = sshKey();
      const imp = await c.importKeyPair(new Ecs.ImportKeyPairRequest({
        regionId: 'cn-hangzhou', keyPairName: 'node-kp', publicKeyBody: key.line,
      }));
      assert.strictEqual(imp.body.keyPairFingerPrint, key.md5);
      const run = await c.runInstances(new Ecs.RunInstancesRequest({
        regionId: 'cn-hangzhou', imageId: 'aliyun_3_x64_20G_alibase_20240819.vhd', instanceType: 'ecs.g7.large', amount: 2,
      }));
      const ids = run.body.instanceIdSets.instanceIdSet;
      assert.strictEqual(ids.length, 2);
      const att = await c.attachKeyPair(new Ecs.AttachKeyPairRequest({
        regionId: 'cn-hangzhou', keyPairName: 'node-kp', instanceIds: JSON.stringify(ids),
      }));
      assert.strictEqual(att.body.totalCount, '2');
      assert.strictEqual(att.body.failCount, '0');
      const desc = await c.describeInstances(new Ecs.DescribeInstancesRequest({
        regionId: 'cn-hangzhou', keyPairName: 'node-kp',
      }));
      assert.strictEqual(desc.body.totalCount, 2);
      assert.deepStrictEqual(desc.body.instances.instance.map((i) => i.keyPairName), ['node-kp', 'node-kp']);
      const kps = await c.describeKeyPairs(new Ecs.DescribeKeyPairsRequest({ regionId: 'cn-hangzhou', keyPairName: '*kp*' }));
      assert.strictEqual(kps.body.keyPairs.keyPair[0].keyPairFingerPrint, key.md5);
      const det = await c.detachKeyPair(new Ecs.DetachKeyPairRequest({
        regionId: 'cn-hangzhou', keyPairName: 'node-kp', instanceIds: JSON.stringify([ids[0], 'i-missing00000000000000']),
      }));
      assert.strictEqual(det.body.failCount, '1');
      assert.strictEqual(det.body.results.result[1].code, 'InvalidInstanceId.NotFound');
      await assert.rejects(
        c.attachKeyPair(new Ecs.AttachKeyPairRequest({ regionId: 'cn-hangzhou', keyPairName: 'nope', instanceIds: '["i-a"]' })),
        (e) => e.code === 'InvalidKeyPairName.NotFound' && e.statusCode === 400,
      );
    } finally {
      proc.kill('SIGTERM');
    }
  });
}
