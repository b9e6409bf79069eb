// The web console in a real headless Chromium (Debian's, driven by playwright-core): the console
// guide's bind workflow from sign-in to restart, against the real keyplane binary.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Ecs = require('@alicloud/ecs20140526');
const Ram = require('@alicloud/ram20150501');

const { ROOT, SCHEME, TLS, startServer: start } = require('./server');
const { LINUX, WINDOWS, sdkConfig, launch } = require('./browser');
const SHOTS = path.join(ROOT, 'docs', 'screenshots');
const AK = 'LTAI5tConsoleTest001';
const SK = 'console-test-secret';

const config = (port) => sdkConfig(port, AK, SK);

test('the console guide workflow, from sign-in to restart', async () => {
  const { port, proc } = await start(AK, SK);
  const browser = await launch();
  const errors = [];
  try {
    const ecs = new Ecs.default(config(port));
    const run = async (image, amount, name) => (await ecs.runInstances(new Ecs.RunInstancesRequest({
      regionId: 'cn-hangzhou', imageId: image, instanceType: 'ecs.g7.large', amount, instanceName: name,
    }))).body.instanceIdSets.instanceIdSet;
    const [web1, web2] = await run(LINUX, 2, 'web');
    const [win] = await run(WINDOWS, 1, 'win');
    const [stopped] = await run(LINUX, 1, 'batch');
    await ecs.stopInstance(new Ecs.StopInstanceRequest({ instanceId: stopped }));

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    const page = await context.newPage();
    // Refusals of the API that the page shows on purpose (a bad key, a bound key pair) are not errors.
    page.on('console', (m) => { if (m.type() === 'error' && !m.location().url.includes('/api/v1/')) errors.push(`${m.text()} ${m.location().url}`); });
    page.on('pageerror', (e) => errors.push(String(e)));
    const base = `${SCHEME}://127.0.0.1:${port}/console`;

    // Sign in with an AccessKey; the cookie is HttpOnly, SameSite=Strict, expires, and is Secure
    // when the console is served over HTTPS.
    await page.goto(base);
    await page.screenshot({ path: path.join(SHOTS, 'sign-in.png') });
    await page.getByLabel('AccessKey secret').fill('wrong');
    await page.getByLabel('AccessKey ID').fill(AK);
    await page.locator('#signin-key button[type=submit]').click();
    await page.getByText('The credentials are not valid.').waitFor();
    await page.getByLabel('AccessKey secret').fill(SK);
    await page.locator('#signin-key button[type=submit]').click();
    await page.getByRole('heading', { name: 'SSH Key Pairs' }).waitFor();
    const cookie = (await context.cookies()).find((c) => c.name === 'kp_session');
    assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.expires > Date.now() / 1000);
    assert.strictEqual(cookie.secure, TLS);
    // Without the CSRF token a change is refused even with the cookie.
    const csrfless = await page.evaluate(async () => (await fetch('/api/v1/ecs/DeleteKeyPairs', { method: 'POST', body: new URLSearchParams({ RegionId: 'cn-hangzhou', KeyPairNames: '["x"]' }) })).status);
    assert.strictEqual(csrfless, 403);

    // Create: the private key downloads once, and matches the listed fingerprint.
    await page.getByRole('button', { name: 'Create SSH Key Pair' }).click();
    await page.getByText('it cannot be downloaded again').waitFor();
    await page.getByLabel('Key pair name').fill('console-key');
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#dialog-ok').click()]);
    const pem = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kp-dl-')), 'console-key.pem');
    await download.saveAs(pem);
    fs.chmodSync(pem, 0o600);
    execFileSync('ssh-keygen', ['-y', '-f', pem]);
    const md5 = execFileSync('ssh-keygen', ['-E', 'md5', '-lf', pem]).toString().split(' ')[1].replace('MD5:', '');
    const row = page.locator('tr[data-name="console-key"]');
    await row.waitFor();
    assert.strictEqual((await row.locator('td').nth(2).textContent()).trim(), md5);

    // Import: a bad key gets a clear error, a good one is listed.
    await page.getByRole('button', { name: 'Import SSH Key Pair' }).click();
    await page.getByLabel('Key pair name').fill('imported');
    await page.getByLabel('Public key').fill('ssh-rsa AAAAtooshort');
    await page.locator('#dialog-ok').click();
    await page.locator('#dialog-error', { hasText: 'InvalidPublicKeyBody.Malformed' }).waitFor();
    const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kp-key-'));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(keyDir, 'id')]);
    await page.getByLabel('Public key').fill(fs.readFileSync(path.join(keyDir, 'id.pub'), 'utf8'));
    await page.locator('#dialog-ok').click();
    await page.locator('tr[data-name="imported"]').waitFor();
    await page.getByLabel('Search by name').fill('console');
    await page.locator('tr[data-name="imported"]').waitFor({ state: 'detached' });
    await page.getByLabel('Search by name').fill('');
    await page.screenshot({ path: path.join(SHOTS, 'key-pairs.png') });

    // Bind: the two-list selector; Windows is dimmed and cannot be selected.
    await row.getByRole('button', { name: 'Bind', exact: true }).click();
    const winItem = page.locator(`#pick-left li[data-id="${win}"]`);
    assert.strictEqual(await winItem.getAttribute('aria-disabled'), 'true');
    await winItem.click({ force: true });
    assert.strictEqual(await winItem.getAttribute('aria-selected'), 'false');
    await page.locator(`#pick-left li[data-id="${web1}"]`).click();
    // Keyboard use: focus an option and press Space.
    await page.locator(`#pick-left li[data-id="${web2}"]`).focus();
    await page.keyboard.press('Space');
    await page.locator(`#pick-left li[data-id="${stopped}"]`).click();
    await page.getByRole('button', { name: 'Move to Selected' }).click();
    assert.strictEqual(await page.locator('#pick-right li[data-id]').count(), 3);
    await page.screenshot({ path: path.join(SHOTS, 'bind-dialog.png') });
    await page.locator('#dialog-ok').click();

    // Step 7: Running instances are offered a restart (the Stopped one starts later).
    await page.getByRole('heading', { name: 'Restart instances?' }).waitFor();
    const listed = await page.locator('#restart-list li').evaluateAll((lis) => lis.map((li) => li.dataset.id));
    assert.deepStrictEqual(listed.sort(), [web1, web2].sort());
    // It names the instances, and says the Stopped one takes the key at its next start.
    assert.match(await page.locator('#restart-list').textContent(), /web \(i-/);
    assert.match(await page.locator('#restart-stopped').textContent(), new RegExp(`${stopped}.*next start`));
    await page.screenshot({ path: path.join(SHOTS, 'restart-prompt.png') });
    await page.locator('#dialog-ok').click();
    await page.getByText('Restarted 2 instance(s).').waitFor();
    assert.strictEqual((await row.locator('td.bound').textContent()).trim(), '3');

    // Delete while bound: refused with the vendor's message.
    await row.getByRole('button', { name: 'Delete' }).click();
    await page.locator('#dialog-ok').click();
    await page.locator('#dialog-error', { hasText: 'KeypairAlreadyAttachedInstance' }).waitFor();
    await page.locator('#dialog-cancel').click();

    // Instances: the binding state per instance, live; Start applies the Stopped one.
    await page.getByRole('link', { name: 'Instances' }).click();
    const state = (id) => page.locator(`tr[data-id="${id}"] .state`);
    await state(web1).filter({ hasText: 'applied' }).waitFor();
    await state(stopped).filter({ hasText: 'pending_restart' }).waitFor();
    await page.locator(`tr[data-id="${stopped}"]`).getByRole('button', { name: 'Start', exact: true }).click();
    await state(stopped).filter({ hasText: 'applied' }).waitFor();
    // Reset a bound instance's password: refused by the vendor rule, then pending until the restart.
    await page.locator(`tr[data-id="${web1}"]`).getByRole('button', { name: 'Reset password' }).click();
    await page.locator('#reset-password').fill('short1A');
    await page.locator('#reset-password-again').fill('short1A');
    await page.locator('#dialog-ok').click();
    await page.locator('#dialog-error', { hasText: 'InvalidPassword.Malformed' }).waitFor();
    await page.locator('#reset-password').fill('Console-Reset-2026');
    await page.locator('#reset-password-again').fill('Console-Reset-2026');
    await page.locator('#dialog-ok').click();
    await page.getByText(`Password of ${web1} reset: it takes effect at the next restart.`).waitFor();
    await state(web1).filter({ hasText: 'pending_restart' }).waitFor();
    await page.locator(`tr[data-id="${web1}"]`).getByRole('button', { name: 'Restart', exact: true }).click();
    await page.getByRole('heading', { name: 'Restart Instance' }).waitFor();
    await page.locator('#dialog-ok').click();
    await state(web1).filter({ hasText: 'applied' }).waitFor();
    // A change made elsewhere shows up without a reload.
    await ecs.detachKeyPair(new Ecs.DetachKeyPairRequest({ regionId: 'cn-hangzhou', keyPairName: 'console-key', instanceIds: JSON.stringify([web2]) }));
    await state(web2).filter({ hasText: 'pending_restart' }).waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'instances.png') });

    // Unbind likewise.
    await page.getByRole('link', { name: 'SSH Key Pairs' }).click();
    await row.getByRole('button', { name: 'Unbind' }).click();
    await page.locator(`#pick-left li[data-id="${web1}"]`).click();
    await page.getByRole('button', { name: 'Move to Selected' }).click();
    await page.locator('#dialog-ok').click();
    await page.getByRole('heading', { name: 'Restart instances?' }).waitFor();
    await page.locator('#dialog-ok').click();
    await page.getByText('Restarted 1 instance(s).').waitFor();

    // The audit log.
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.locator('#au-rows tr', { hasText: 'AttachKeyPair' }).first().waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'audit.png') });

    // A narrow screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('link', { name: 'SSH Key Pairs' }).click();
    await row.waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'narrow.png'), fullPage: true });

    // Sign out: the session is gone.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to keyplane' }).waitFor();
    const after = await page.evaluate(async () => (await fetch('/api/v1/session')).status);
    assert.strictEqual(after, 401);
    assert.deepStrictEqual(errors, [], 'no errors in the browser console');
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
  }
});

test('a RAM user signs in with a password and sees only what its policy allows', async () => {
  const { port, proc } = await start(AK, SK);
  const browser = await launch();
  try {
    const ecs = new Ecs.default(config(port));
    const ids = (await ecs.runInstances(new Ecs.RunInstancesRequest({ regionId: 'cn-hangzhou', imageId: LINUX, instanceType: 't', amount: 2 }))).body.instanceIdSets.instanceIdSet;
    const ram = new Ram.default(config(port));
    await ram.createUser(new Ram.CreateUserRequest({ userName: 'carol' }));
    await ram.createLoginProfile(new Ram.CreateLoginProfileRequest({ userName: 'carol', password: 'Carol-pass-1' }));
    await ram.createPolicy(new Ram.CreatePolicyRequest({ policyName: 'one', policyDocument: JSON.stringify({ Version: '1', Statement: [
      { Effect: 'Allow', Action: ['ecs:Describe*'], Resource: [`acs:ecs:*:*:instance/${ids[0]}`] },
      { Effect: 'Allow', Action: ['keyplane:DescribeAuditRecords'], Resource: ['*'] }] }) }));
    await ram.attachPolicyToUser(new Ram.AttachPolicyToUserRequest({ policyType: 'Custom', policyName: 'one', userName: 'carol' }));
    const account = (await (await fetch(`${SCHEME}://127.0.0.1:${port}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ AccessKeyId: AK, AccessKeySecret: SK }) })).json()).AccountId;

    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await page.goto(`${SCHEME}://127.0.0.1:${port}/console`);
    await page.getByLabel('Account ID').fill(account);
    await page.getByLabel('User name').fill('carol');
    await page.getByLabel('Password', { exact: true }).fill('wrong-Pass-1');
    await page.locator('#signin-user button[type=submit]').click();
    await page.getByText('The credentials are not valid.').waitFor();
    await page.getByLabel('Password', { exact: true }).fill('Carol-pass-1');
    await page.locator('#signin-user button[type=submit]').click();
    await page.getByText(`user/carol · ${account}`).waitFor();
    await page.getByRole('link', { name: 'Instances' }).click();
    await page.locator(`tr[data-id="${ids[0]}"]`).waitFor();
    assert.strictEqual(await page.locator(`tr[data-id="${ids[1]}"]`).count(), 0, 'the other instance is not shown');
    await page.getByRole('link', { name: 'SSH Key Pairs' }).click();
    await page.getByRole('button', { name: 'Create SSH Key Pair' }).click();
    await page.getByLabel('Key pair name').fill('not-allowed');
    await page.locator('#dialog-ok').click();
    await page.locator('#dialog-error', { hasText: 'Forbidden.RAM' }).waitFor();
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
  }
});
