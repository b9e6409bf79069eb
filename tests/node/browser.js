// What the console tests share: the official SDK clients' config, Debian's headless Chromium, and
// signing in through the page.
'use strict';

const { chromium } = require('playwright-core');
const { $OpenApiUtil } = require('@alicloud/openapi-core');
const { SCHEME, BROWSER_TLS_ARGS } = require('./server');

const LINUX = 'aliyun_3_x64_20G_alibase_20240819.vhd';
const WINDOWS = 'win2022_21H2_x64_dtc_en-us_40G_alibase_20240816.vhd';

function sdkConfig(port, ak, sk) {
  return new $OpenApiUtil.Config({ accessKeyId: ak, accessKeySecret: sk, regionId: 'cn-hangzhou', endpoint: `127.0.0.1:${port}`, protocol: SCHEME });
}

async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...BROWSER_TLS_ARGS],
  });
}

/** Signs `page` in with an AccessKey through the sign-in form, and waits for the first page. */
async function signIn(page, ak, sk) {
  await page.getByLabel('AccessKey ID').fill(ak);
  await page.getByLabel('AccessKey secret').fill(sk);
  await page.locator('#signin-key button[type=submit]').click();
  await page.locator('#topbar').waitFor();
}

/** Audit records of the signed-in account, read by the page from the server (not a mock). */
async function auditRecords(page, action) {
  return page.evaluate(async (a) => {
    const r = await fetch(`/api/v1/audit?Action=${a}&MaxResults=1000`, { headers: { 'x-csrf-token': 'x' } });
    return (await r.json()).Records;
  }, action);
}

module.exports = { LINUX, WINDOWS, sdkConfig, launch, signIn, auditRecords };
