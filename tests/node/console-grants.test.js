// Grants in the console (issue 18, SPEC section 15), in a real headless Chromium against the real
// keyplane binary: the Instances page shows an instance's grants with their user and expiry, and a
// key pair's Revoke button revokes it everywhere (after asking), after which it cannot be bound.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const Ecs = require('@alicloud/ecs20140526');

const { BIN, SCHEME, startServer } = require('./server');
const { LINUX, sdkConfig, launch, signIn } = require('./browser');

const AK = 'LTAI5tConsoleGrants01';
const SK = 'console-grants-secret';
const REGION = { regionId: 'cn-hangzhou' };

/** `keyplane access ARGS` against the server, as the root; its JSON. */
function access(port, ...args) {
  const env = { ...process.env, KEYPLANE_ENDPOINT: `${SCHEME}://127.0.0.1:${port}`, KEYPLANE_ACCESS_KEY_ID: AK, KEYPLANE_ACCESS_KEY_SECRET: SK };
  if (process.env.NODE_EXTRA_CA_CERTS) env.KEYPLANE_CA_FILE = process.env.NODE_EXTRA_CA_CERTS;
  return JSON.parse(execFileSync(BIN, ['access', '--region', REGION.regionId, ...args], { env }).toString());
}

test('an instance shows its grants; Revoke on a key pair revokes it everywhere', async () => {
  const { port, proc } = await startServer(AK, SK);
  const browser = await launch();
  try {
    const ecs = new Ecs.default(sdkConfig(port, AK, SK));
    await ecs.createKeyPair(new Ecs.CreateKeyPairRequest({ ...REGION, keyPairName: 'team' }));
    const r = await ecs.runInstances(new Ecs.RunInstancesRequest({ ...REGION, imageId: LINUX, instanceType: 'ecs.g7.large', amount: 1, instanceName: 'web' }));
    const [vm] = r.body.instanceIdSets.instanceIdSet;
    const granted = access(port, 'grant', '--key-pair', 'team', '--instance-id', vm, '--os-user', 'deploy', '--ttl', '8h', '--now');
    assert.strictEqual(granted.Grants[0].State, 'applied');

    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await page.goto(`${SCHEME}://127.0.0.1:${port}/console`);
    await signIn(page, AK, SK);
    await page.getByRole('link', { name: 'Instances' }).click();
    const cellText = page.locator(`tr[data-id="${vm}"] td.grants`);
    await cellText.filter({ hasText: 'deploy' }).waitFor();
    const text = await cellText.textContent();
    assert.match(text, /deploy \(team until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, applied\)/);

    await page.getByRole('link', { name: 'SSH Key Pairs' }).click();
    await page.locator('tr[data-name="team"]').getByRole('button', { name: 'Revoke' }).click();
    await page.getByText('Revoke team everywhere?').waitFor();
    await page.getByRole('button', { name: 'Revoke', exact: true }).last().click();
    await page.getByText('Revoked team: no host accepts its key any more.').waitFor();
    const listed = access(port, 'list', '--instance-id', vm);
    assert.deepStrictEqual(listed.Grants.map((g) => g.State), ['revoked']);
    await assert.rejects(
      ecs.attachKeyPair(new Ecs.AttachKeyPairRequest({ ...REGION, keyPairName: 'team', instanceIds: JSON.stringify([vm]) })),
      (e) => e.code === 'KeyPairRevoked',
    );
    await page.getByRole('link', { name: 'Instances' }).click();
    await page.waitForFunction((id) => {
      const td = document.querySelector(`tr[data-id="${id}"] td.grants`);
      return td && td.textContent === '—';
    }, vm);
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
  }
});
