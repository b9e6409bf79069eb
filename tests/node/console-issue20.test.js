// The console defects of issue 20, in a real headless Chromium against the real keyplane binary:
// an ended session goes back to sign-in, sign-out leaves no secret behind, every one of 150+
// instances can be bound from the dialog, a double click binds once, Enter after OK restarts
// nothing, Stop and Restart ask first, the Instances poll keeps the focus, and the smaller items.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const Ecs = require('@alicloud/ecs20140526');

const { SCHEME, startServer: start } = require('./server');
const { LINUX, sdkConfig, launch, signIn, auditRecords } = require('./browser');

const AK = 'LTAI5tConsoleIssue20';
const SK = 'console-issue-20-secret';
const REGION = { regionId: 'cn-hangzhou' };

/** A server, a browser, an SDK client and a signed-in page at 1280×800; `fn` runs with them. */
async function withConsole(fn, viewport = { width: 1280, height: 800 }) {
  const { port, proc } = await start(AK, SK);
  const browser = await launch();
  try {
    const ecs = new Ecs.default(sdkConfig(port, AK, SK));
    const context = await browser.newContext({ viewport, acceptDownloads: true });
    const page = await context.newPage();
    const base = `${SCHEME}://127.0.0.1:${port}/console`;
    await fn({ ecs, context, page, base });
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
  }
}

async function run(ecs, amount, name) {
  const r = await ecs.runInstances(new Ecs.RunInstancesRequest({ ...REGION, imageId: LINUX, instanceType: 'ecs.g7.large', amount, instanceName: name }));
  return r.body.instanceIdSets.instanceIdSet;
}

async function createKeyPair(ecs, name) {
  await ecs.createKeyPair(new Ecs.CreateKeyPairRequest({ ...REGION, keyPairName: name }));
}

async function status(ecs, id) {
  const r = await ecs.describeInstances(new Ecs.DescribeInstancesRequest({ ...REGION, instanceIds: JSON.stringify([id]) }));
  return r.body.instances.instance[0];
}

const focusKey = (page) => page.evaluate(() => document.activeElement && document.activeElement.dataset.focusKey);

/** Opens the bind dialog of `name` and moves the instances `ids` to Selected. */
async function chooseInDialog(page, name, ids) {
  await page.locator(`tr[data-name="${name}"]`).getByRole('button', { name: 'Bind', exact: true }).click();
  for (const id of ids) await page.locator(`#pick-left li[data-id="${id}"]`).click();
  await page.getByRole('button', { name: 'Move to Selected' }).click();
}

test('an ended session goes back to sign-in with a message; sign-out clears the secrets and hides the top bar', async () => {
  await withConsole(async ({ ecs, context, page, base }) => {
    await createKeyPair(ecs, 'kept');
    await run(ecs, 1, 'web');
    await page.goto(`${base}#instances`);
    await page.getByLabel('Password', { exact: true }).fill('typed-but-not-sent');
    await signIn(page, AK, SK);
    await page.locator('#in-rows tr[data-id]').first().waitFor();

    // Sign-out in another tab clears the cookie: the Instances page's next poll gets 401 and the
    // page goes back to sign-in with a message, and stops polling.
    const other = await context.newPage();
    await other.goto(base);
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.getByRole('heading', { name: 'Sign in to keyplane' }).waitFor();
    await page.getByText('Your session has ended; sign in again.').waitFor();
    assert.strictEqual(await page.locator('#topbar').isVisible(), false);
    assert.strictEqual(await page.evaluate(() => state.poll), null, 'the Instances page stopped polling');
    assert.strictEqual(await page.locator('#in-message').textContent(), '', 'no signature error shown');

    // Signing in again returns to the page the session ended on.
    await page.getByLabel('AccessKey secret').fill(SK);
    await page.locator('#signin-key button[type=submit]').click();
    await page.locator('#in-rows tr[data-id]').first().waitFor();
    assert.match(page.url(), /#instances$/);

    // A session the server no longer knows (a restart forgets every session): the next action
    // goes back to sign-in too, and the dialog it would have opened does not open.
    await page.getByRole('link', { name: 'SSH Key Pairs' }).click();
    await page.locator('tr[data-name="kept"]').waitFor();
    const cookie = (await context.cookies()).find((c) => c.name === 'kp_session');
    await context.addCookies([{ ...cookie, value: 'forgotten-by-the-server' }]);
    await page.locator('tr[data-name="kept"]').getByRole('button', { name: 'Bind', exact: true }).click();
    await page.getByText('Your session has ended; sign in again.').waitFor();
    assert.strictEqual(await page.locator('#dialog').isVisible(), false);

    // Sign out: no secret and no password left in the form, and no top bar.
    await page.getByLabel('AccessKey secret').fill(SK);
    await page.getByLabel('Password', { exact: true }).fill('typed-again');
    await page.locator('#signin-key button[type=submit]').click();
    await page.locator('tr[data-name="kept"]').waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to keyplane' }).waitFor();
    assert.strictEqual(await page.getByLabel('AccessKey secret').inputValue(), '');
    assert.strictEqual(await page.getByLabel('Password', { exact: true }).inputValue(), '');
    assert.strictEqual(await page.locator('#topbar').isVisible(), false);
    assert.strictEqual(await page.locator('tr[data-name="kept"]').count(), 0, 'the signed-out page shows no data');
  });
});

test('150 instances are all bindable from the dialog: search, select all, range selection, keyboard', async () => {
  await withConsole(async ({ ecs, page, base }) => {
    const bulk = [...await run(ecs, 100, 'bulk'), ...await run(ecs, 50, 'bulk')];
    const [old] = await run(ecs, 1, 'Holder');
    await createKeyPair(ecs, 'old-key');
    await ecs.attachKeyPair(new Ecs.AttachKeyPairRequest({ ...REGION, keyPairName: 'old-key', instanceIds: JSON.stringify([old]) }));
    for (let i = 0; i < 11; i++) await createKeyPair(ecs, `Fleet-${String(i).padStart(2, '0')}`);
    await page.goto(base);
    await signIn(page, AK, SK);

    // A new key pair is on the first page (newest first), even with 13 before it.
    await page.getByRole('button', { name: 'Create SSH Key Pair' }).click();
    await page.getByLabel('Key pair name').fill('zz-newest');
    await Promise.all([page.waitForEvent('download'), page.locator('#dialog-ok').click()]);
    await page.locator('tr[data-name="zz-newest"]').waitFor();
    assert.strictEqual(await page.locator('#kp-rows tr').first().getAttribute('data-name'), 'zz-newest');
    // Focus is back on the button that opened the dialog.
    assert.strictEqual(await page.evaluate(() => document.activeElement.id), 'kp-create');
    // Search is case-insensitive.
    await page.getByLabel('Search by name').fill('fleet-1');
    await page.locator('tr[data-name="Fleet-10"]').waitFor();
    await page.locator('tr[data-name="zz-newest"]').waitFor({ state: 'detached' });
    await page.getByLabel('Search by name').fill('');

    await page.locator('tr[data-name="zz-newest"]').getByRole('button', { name: 'Bind', exact: true }).click();
    await page.locator('#pick-left li[data-id]').first().waitFor();
    assert.strictEqual(await page.locator('#pick-left li[data-id]').count(), 151, 'every instance is offered');
    // The current key pair of each instance, and what binding does to it.
    assert.match(await page.locator(`#pick-left li[data-id="${old}"]`).textContent(), /key pair: old-key/);
    assert.match(await page.locator('#bind-note').textContent(), /replaces the key pair.*password login off/);

    // Range selection: click one, Shift+click another; the keyboard moves and extends.
    const item = (k) => page.locator('#pick-left li[data-index]').nth(k);
    await item(2).click();
    await item(9).click({ modifiers: ['Shift'] });
    assert.strictEqual(await page.locator('#pick-left li[aria-selected="true"]').count(), 8);
    await page.keyboard.press('Shift+ArrowDown');
    assert.strictEqual(await page.locator('#pick-left li[aria-selected="true"]').count(), 9);
    assert.strictEqual(await page.evaluate(() => document.activeElement.dataset.index), '10');
    await page.keyboard.press('ArrowUp');
    assert.strictEqual(await page.evaluate(() => document.activeElement.dataset.index), '9');

    // Search inside the dialog (any case), select all it shows, move them: all 150.
    await page.getByLabel('Search Select Instance').fill('BULK');
    assert.strictEqual(await page.locator('#pick-left li[data-id]').count(), 150);
    await page.getByLabel('Select all shown').first().check();
    await page.getByRole('button', { name: 'Move to Selected' }).click();
    assert.strictEqual(await page.locator('#pick-right li[data-id]').count(), 150);
    assert.strictEqual(await page.locator('#pick-left li[data-id]').count(), 0);
    await page.screenshot({ path: require('node:path').join(__dirname, '..', '..', 'docs', 'screenshots', 'bind-dialog-150.png') });
    await page.locator('#dialog-ok').click();
    await page.getByRole('heading', { name: 'Restart instances?' }).waitFor();
    assert.strictEqual(await page.locator('#restart-list li').count(), 150);
    await page.getByRole('button', { name: 'Not now' }).click();
    await page.getByText('AttachKeyPair: 150 done.').waitFor();
    const bound = await ecs.describeInstances(new Ecs.DescribeInstancesRequest({ ...REGION, keyPairName: 'zz-newest', pageSize: 100 }));
    assert.strictEqual(bound.body.totalCount, 150);
    // The bind answer is drawn in the success colour.
    const colour = (sel) => page.locator(sel).evaluate((e) => getComputedStyle(e).color);
    const success = await colour('#kp-message');

    // A partial failure is drawn in the error colour: an instance deleted while the dialog is open.
    await page.getByLabel('Search by name').fill('OLD');
    await chooseInDialog(page, 'old-key', [bulk[0]]);
    await ecs.deleteInstance(new Ecs.DeleteInstanceRequest({ instanceId: bulk[0], force: true }));
    await page.locator('#dialog-ok').click();
    await page.locator('#kp-message', { hasText: '1 failed' }).waitFor();
    assert.notStrictEqual(await colour('#kp-message'), success);
    assert.match(await page.locator('#kp-message').getAttribute('class'), /\berror\b/);
  });
});

test('a double click on OK binds once, Enter after OK restarts nothing, and Stop and Restart ask first', async () => {
  await withConsole(async ({ ecs, page, base }) => {
    const [a, b] = await run(ecs, 2, 'app');
    await createKeyPair(ecs, 'dbl');
    await createKeyPair(ecs, 'ent');
    await page.goto(base);
    await signIn(page, AK, SK);

    // Double click on OK: one AttachKeyPair, and the restart prompt stays open.
    await chooseInDialog(page, 'dbl', [a]);
    await page.locator('#dialog-ok').dblclick();
    await page.getByRole('heading', { name: 'Restart instances?' }).waitFor();
    const attaches = (await auditRecords(page, 'AttachKeyPair')).filter((r) => r.Resources.some((x) => x.endsWith('/dbl')));
    assert.strictEqual(attaches.length, 1, JSON.stringify(attaches));
    assert.strictEqual(await page.getByRole('heading', { name: 'Restart instances?' }).isVisible(), true);
    assert.strictEqual((await auditRecords(page, 'RebootInstance')).length, 0);
    await page.getByRole('button', { name: 'Not now' }).click();

    // OK by Enter, then Enter again: the prompt starts on "Not now", so nothing restarts.
    await chooseInDialog(page, 'ent', [b]);
    await page.locator('#dialog-ok').focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Restart instances?' }).waitFor();
    assert.strictEqual(await page.evaluate(() => document.activeElement.textContent), 'Not now');
    await page.keyboard.press('Enter');
    await page.locator('#dialog').waitFor({ state: 'hidden' });
    assert.strictEqual((await auditRecords(page, 'RebootInstance')).length, 0);
    assert.strictEqual((await status(ecs, b)).status, 'Running');
    // The focus is back on the Bind button of the row, drawn anew.
    await page.waitForFunction(() => document.activeElement && document.activeElement.dataset.focusKey === 'kp:ent:bind');

    // Instances: only the actions the state allows; Stop and Restart ask first, starting on Cancel.
    await page.getByRole('link', { name: 'Instances' }).click();
    const row = (id) => page.locator(`tr[data-id="${id}"]`);
    const button = (id, name) => row(id).getByRole('button', { name, exact: true });
    await button(a, 'Stop').waitFor();
    assert.strictEqual(await button(a, 'Start').count(), 0, 'no Start for a Running instance');
    await button(a, 'Stop').click();
    await page.getByRole('heading', { name: 'Stop Instance' }).waitFor();
    assert.strictEqual(await page.evaluate(() => document.activeElement.id), 'dialog-cancel');
    await page.keyboard.press('Enter');
    await page.locator('#dialog').waitFor({ state: 'hidden' });
    assert.strictEqual((await auditRecords(page, 'StopInstance')).length, 0);
    await button(a, 'Restart').click();
    await page.getByRole('heading', { name: 'Restart Instance' }).waitFor();
    await page.getByRole('button', { name: 'Cancel' }).click();
    assert.strictEqual((await auditRecords(page, 'RebootInstance')).length, 0);
    await button(a, 'Stop').click();
    await page.locator('#dialog-ok').click();
    await button(a, 'Start').waitFor();
    assert.strictEqual(await button(a, 'Stop').count(), 0, 'no Stop for a Stopped instance');
    assert.strictEqual(await button(a, 'Restart').count(), 0, 'no Restart for a Stopped instance');
    assert.strictEqual((await auditRecords(page, 'StopInstance')).length, 1);

    // The 2-second poll leaves the focus where it is, even while other rows change.
    await button(b, 'Reset password').focus();
    await ecs.startInstance(new Ecs.StartInstanceRequest({ instanceId: a }));
    await button(a, 'Stop').waitFor();
    assert.strictEqual(await focusKey(page), `in:${b}:Reset password`);
  });
});

test('the audit page runs newest first, filters as you type; empty regions, long names and a phone', async () => {
  await withConsole(async ({ ecs, page, base }) => {
    for (let i = 0; i < 23; i++) await createKeyPair(ecs, `audit-${String(i).padStart(2, '0')}`);
    const long = `a-very-long-key-pair-name-${'x'.repeat(90)}`;
    await createKeyPair(ecs, long);
    const [vm] = await run(ecs, 1, 'phone');
    await page.goto(base);
    await signIn(page, AK, SK);

    // A 116-character name wraps inside its cell; the ID stays on one line, the fingerprint breaks
    // only between bytes.
    await page.getByLabel('Search by name').fill('very-long');
    // The filtered list is drawn (the long name is also on the unfiltered first page).
    await page.locator('#kp-page', { hasText: '(1 key pairs)' }).waitFor();
    const row = page.locator(`tr[data-name="${long}"]`);
    const lines = (sel) => row.locator(sel).evaluate((td) => {
      const r = document.createRange();
      r.selectNodeContents(td);
      return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size;
    });
    assert.strictEqual(await lines('td.id'), 1, 'the ID is on one line');
    assert.ok(await lines('td.fp') <= 2, 'the fingerprint takes at most two lines');
    assert.ok(await lines('td.name') > 1, 'the long name wraps');
    // No byte is split over two lines: each piece of text of the cell stays on one line.
    const split = await row.locator('td.fp').evaluate((td) => {
      const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
      const out = [];
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const r = document.createRange();
        r.selectNodeContents(n);
        if (new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size > 1) out.push(n.textContent);
      }
      return out;
    });
    assert.deepStrictEqual(split, [], 'the fingerprint breaks only between bytes');

    // Audit: newest first; the filter applies as it is typed; "Older records" loads older ones.
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.locator('#au-rows tr').first().waitFor();
    assert.match(await page.locator('#au-rows tr').first().textContent(), /RunInstances/);
    await page.getByLabel('Action').fill('CreateKeyPair');
    await page.waitForFunction(() => [...document.querySelectorAll('#au-rows tr')].every((tr) => tr.cells[3] && tr.cells[3].textContent === 'CreateKeyPair'));
    const firstPage = await page.locator('#au-rows td.resources').allTextContents();
    assert.strictEqual(firstPage.length, 20);
    assert.ok(firstPage[0].endsWith(long), firstPage[0]);
    assert.ok(firstPage[1].endsWith('audit-22'), firstPage[1]);
    await page.getByRole('button', { name: 'Older records' }).click();
    await page.locator('#au-rows tr', { hasText: 'audit-00' }).waitFor();
    const all = await page.locator('#au-rows td.resources').allTextContents();
    assert.strictEqual(all.length, 24);
    assert.ok(all[23].endsWith('audit-00'), all[23]);
    assert.strictEqual(await page.getByRole('button', { name: 'Older records' }).isDisabled(), true);
    await page.getByLabel('Action').fill('NoSuchAction');
    await page.getByText('No records of the action "NoSuchAction".').waitFor();

    // An empty region says so.
    await page.locator('#region').selectOption('cn-beijing');
    await page.getByRole('link', { name: 'SSH Key Pairs' }).click();
    await page.getByText('No key pair in this region matches "very-long".').waitFor();
    await page.getByLabel('Search by name').fill('');
    await page.getByText('No key pairs in this region yet').waitFor();
    await page.getByRole('link', { name: 'Instances' }).click();
    await page.getByText('No instances in this region.').waitFor();

    // A phone: the status and the actions of an instance are on the screen, not cut off.
    await page.locator('#region').selectOption('cn-hangzhou');
    await page.setViewportSize({ width: 390, height: 844 });
    const stop = page.locator(`tr[data-id="${vm}"]`).getByRole('button', { name: 'Stop', exact: true });
    await stop.waitFor();
    for (const target of [stop, page.locator(`tr[data-id="${vm}"] td.status`)]) {
      const box = await target.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 390, `inside the screen: ${JSON.stringify(box)}`);
    }
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth) <= 390, 'no sideways scrolling');
    await page.screenshot({ path: require('node:path').join(__dirname, '..', '..', 'docs', 'screenshots', 'narrow-instances.png'), fullPage: true });
    // And the sign-in error is on the screen.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('AccessKey secret').fill('wrong');
    await page.locator('#signin-key button[type=submit]').click();
    await page.getByText('The credentials are not valid.').waitFor();
    const box = await page.locator('#signin-error').boundingBox();
    assert.ok(box.y >= 0 && box.y + box.height <= 844, `the error is on the screen: ${JSON.stringify(box)}`);
  });
});
