// keyplane console: one page, no framework, no build step. It talks to the server's native API
// with the session cookie and the session's CSRF token; ECS actions go through /api/v1/ecs/{Action},
// so RAM policies and the audit log apply exactly as to signed calls.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { csrf: '', region: 'cn-hangzhou', kpPage: 1, kpTotal: 0, auditToken: '', poll: null };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function json(resp) {
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(body.Message || `HTTP ${resp.status}`);
    err.code = body.Code || '';
    throw err;
  }
  return body;
}

async function ecs(action, params = {}) {
  const form = new URLSearchParams({ RegionId: state.region, ...params });
  return json(await fetch(`/api/v1/ecs/${action}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-csrf-token': state.csrf },
    body: form,
  }));
}

async function native(path, params = {}) {
  const q = new URLSearchParams(params);
  return json(await fetch(`/api/v1/${path}?${q}`, { headers: { 'x-csrf-token': state.csrf } }));
}

function errorText(e) {
  return e.code ? `${e.code}: ${e.message}` : e.message;
}

// ---- dialog -------------------------------------------------------------------------------------

function openDialog(title, body, okLabel, onOk) {
  const d = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').replaceChildren(body);
  $('dialog-error').textContent = '';
  $('dialog-ok').textContent = okLabel;
  $('dialog-ok').hidden = !onOk;
  return new Promise((resolve) => {
    const close = (v) => { d.close(); resolve(v); };
    $('dialog-cancel').onclick = () => close(null);
    d.oncancel = () => resolve(null);
    $('dialog-form').onsubmit = async (ev) => {
      ev.preventDefault();
      try {
        close(await onOk());
      } catch (e) {
        $('dialog-error').textContent = errorText(e);
      }
    };
    d.showModal();
    const first = body.querySelector('input, textarea, li[tabindex], button');
    (first || $('dialog-ok')).focus();
  });
}

// ---- sign in ------------------------------------------------------------------------------------

async function signIn(payload) {
  try {
    const s = await json(await fetch('/api/v1/session', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload),
    }));
    start(s);
  } catch (e) {
    $('signin-error').textContent = e.message;
  }
}

function start(s) {
  state.csrf = s.CsrfToken;
  $('who').textContent = `${s.Principal} · ${s.AccountId}`;
  $('signin').hidden = true;
  $('topbar').hidden = false;
  if (!location.hash || location.hash === '#signin') location.hash = '#keypairs';
  route();
}

async function signOut() {
  await fetch('/api/v1/session', { method: 'DELETE', headers: { 'x-csrf-token': state.csrf } });
  state.csrf = '';
  location.hash = '';
  showSignIn();
}

function showSignIn() {
  clearInterval(state.poll);
  for (const p of document.querySelectorAll('.page')) p.hidden = true;
  $('topbar').hidden = true;
  $('signin').hidden = false;
  $('ak').focus();
}

// ---- key pairs ----------------------------------------------------------------------------------

async function allInstances() {
  const r = await ecs('DescribeInstances', { PageSize: 100 });
  return r.Instances.Instance;
}

async function loadKeyPairs() {
  const msg = $('kp-message');
  try {
    const name = $('kp-search').value.trim();
    const params = { PageNumber: state.kpPage, PageSize: 10 };
    if (name) params.KeyPairName = name.includes('*') ? name : `*${name}*`;
    const [r, instances] = await Promise.all([ecs('DescribeKeyPairs', params), allInstances()]);
    state.kpTotal = r.TotalCount;
    const bound = (kp) => instances.filter((i) => i.KeyPairName === kp).length;
    $('kp-rows').replaceChildren(...r.KeyPairs.KeyPair.map((kp) => el('tr', { 'data-name': kp.KeyPairName },
      el('td', {}, kp.KeyPairName),
      el('td', { class: 'mono' }, kp.KeyPairId),
      el('td', { class: 'mono' }, kp.KeyPairFingerPrint),
      el('td', {}, kp.CreationTime),
      el('td', { class: 'bound' }, bound(kp.KeyPairName)),
      el('td', {},
        el('button', { type: 'button', class: 'link', onclick: () => bindDialog(kp.KeyPairName, 'bind') }, 'Bind'),
        el('button', { type: 'button', class: 'link', onclick: () => bindDialog(kp.KeyPairName, 'unbind') }, 'Unbind'),
        el('button', { type: 'button', class: 'link', onclick: () => deleteKeyPair(kp.KeyPairName) }, 'Delete')))));
    const pages = Math.max(1, Math.ceil(state.kpTotal / 10));
    $('kp-page').textContent = `Page ${state.kpPage} of ${pages} (${state.kpTotal} key pairs)`;
    $('kp-prev').disabled = state.kpPage <= 1;
    $('kp-next').disabled = state.kpPage >= pages;
  } catch (e) {
    msg.textContent = '';
    $('kp-rows').replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'error' }, errorText(e))));
  }
}

function download(name, text) {
  const a = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/x-pem-file' })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

async function createKeyPair() {
  const name = el('input', { id: 'new-kp-name', required: true, autocomplete: 'off' });
  const body = el('div', {},
    el('label', {}, 'Key pair name', name),
    el('p', { class: 'warning' }, 'The private key is downloaded once, now. keyplane does not keep it: it cannot be downloaded again.'));
  const created = await openDialog('Create SSH Key Pair', body, 'OK', () => ecs('CreateKeyPair', { KeyPairName: name.value.trim() }));
  if (created) {
    download(`${created.KeyPairName}.pem`, created.PrivateKeyBody);
    $('kp-message').textContent = `Created ${created.KeyPairName}; its private key was downloaded as ${created.KeyPairName}.pem.`;
    loadKeyPairs();
  }
}

async function importKeyPair() {
  const name = el('input', { id: 'import-name', required: true, autocomplete: 'off' });
  const key = el('textarea', { id: 'import-key', required: true, placeholder: 'ssh-ed25519 AAAA… user@host' });
  const body = el('div', {}, el('label', {}, 'Key pair name', name), el('label', {}, 'Public key', key));
  const done = await openDialog('Import SSH Key Pair', body, 'OK',
    () => ecs('ImportKeyPair', { KeyPairName: name.value.trim(), PublicKeyBody: key.value }));
  if (done) {
    $('kp-message').textContent = `Imported ${done.KeyPairName} (${done.KeyPairFingerPrint}).`;
    loadKeyPairs();
  }
}

async function deleteKeyPair(name) {
  const ok = await openDialog('Delete SSH Key Pair', el('p', {}, `Delete the key pair ${name}?`), 'Delete',
    () => ecs('DeleteKeyPairs', { KeyPairNames: JSON.stringify([name]) }));
  if (ok) {
    $('kp-message').textContent = `Deleted ${name}.`;
    loadKeyPairs();
  }
}

// The two-list selector of the console guide: Select Instance on the left, Selected on the right.
function picker(instances) {
  const left = el('ul', { id: 'pick-left', role: 'listbox', 'aria-multiselectable': 'true', 'aria-labelledby': 'pick-left-label' });
  const right = el('ul', { id: 'pick-right', role: 'listbox', 'aria-multiselectable': 'true', 'aria-labelledby': 'pick-right-label' });
  for (const i of instances) {
    const windows = i.OSType === 'windows';
    const li = el('li', {
      role: 'option', tabindex: 0, 'data-id': i.InstanceId, 'data-status': i.Status, 'aria-selected': 'false',
      'aria-disabled': windows ? 'true' : 'false', title: windows ? 'Windows instances cannot use SSH key pairs' : '',
    }, `${i.InstanceName} (${i.InstanceId}) · ${i.Status}${windows ? ' · Windows' : ''}`);
    const toggle = () => { if (!windows) li.setAttribute('aria-selected', li.getAttribute('aria-selected') === 'true' ? 'false' : 'true'); };
    li.addEventListener('click', toggle);
    li.addEventListener('keydown', (e) => { if (e.key === ' ' || e.key === 'Enter') { e.preventDefault(); toggle(); } });
    left.append(li);
  }
  const move = (from, to) => () => {
    for (const li of [...from.querySelectorAll('li[aria-selected="true"]')]) {
      li.setAttribute('aria-selected', 'false');
      to.append(li);
    }
  };
  const node = el('div', { class: 'picker' },
    el('div', {}, el('p', { id: 'pick-left-label' }, 'Select Instance'), left),
    el('div', { class: 'moves' },
      el('button', { type: 'button', id: 'pick-add', 'aria-label': 'Move to Selected', onclick: move(left, right) }, '>'),
      el('button', { type: 'button', id: 'pick-remove', 'aria-label': 'Move back', onclick: move(right, left) }, '<')),
    el('div', {}, el('p', { id: 'pick-right-label' }, 'Selected'), right));
  node.selected = () => [...right.querySelectorAll('li')].map((li) => ({ id: li.dataset.id, status: li.dataset.status }));
  return node;
}

async function bindDialog(name, mode) {
  const instances = (await allInstances()).filter((i) => mode === 'bind' || i.KeyPairName === name);
  const p = picker(instances);
  const action = mode === 'bind' ? 'AttachKeyPair' : 'DetachKeyPair';
  const result = await openDialog(`${mode === 'bind' ? 'Bind' : 'Unbind'} key pair ${name}`, p, 'OK', async () => {
    const chosen = p.selected();
    if (!chosen.length) throw new Error('Select at least one instance and move it to Selected with >.');
    const r = await ecs(action, { KeyPairName: name, InstanceIds: JSON.stringify(chosen.map((c) => c.id)) });
    return { r, chosen };
  });
  if (!result) return;
  const failed = result.r.Results.Result.filter((x) => x.Success !== 'true');
  const ok = result.r.Results.Result.filter((x) => x.Success === 'true').map((x) => x.InstanceId);
  $('kp-message').textContent = `${action}: ${ok.length} done` + (failed.length ? `, ${failed.length} failed: ${failed.map((f) => `${f.InstanceId} ${f.Code}`).join('; ')}` : '.');
  loadKeyPairs();
  const running = result.chosen.filter((c) => c.status === 'Running' && ok.includes(c.id)).map((c) => c.id);
  if (running.length) restartPrompt(running);
}

// Step 7 of the console guide: Running instances take the change at their next restart.
async function restartPrompt(ids) {
  const body = el('div', {},
    el('p', {}, 'The change takes effect when these Running instances restart:'),
    el('ul', { id: 'restart-list' }, ...ids.map((id) => el('li', {}, id))));
  const done = await openDialog('Restart instances?', body, 'Restart', async () => {
    for (const id of ids) await ecs('RebootInstance', { InstanceId: id });
    return true;
  });
  if (done) $('kp-message').textContent = `Restarted ${ids.length} instance(s).`;
}

// ---- instances ----------------------------------------------------------------------------------

async function loadInstances() {
  try {
    const r = await native('instances', { RegionId: state.region });
    $('in-rows').replaceChildren(...r.Instances.map((i) => el('tr', { 'data-id': i.InstanceId },
      el('td', {}, `${i.InstanceName} `, el('span', { class: 'mono' }, i.InstanceId)),
      el('td', { class: 'status' }, i.Status),
      el('td', {}, i.OsName || i.OsType),
      el('td', {}, i.KeyPairName || '—'),
      el('td', {}, el('span', { class: `state ${i.BindingState}` }, i.BindingState), i.BindingError ? ` ${i.BindingError}` : ''),
      el('td', {},
        el('button', { type: 'button', class: 'link', onclick: () => power('StartInstance', i.InstanceId) }, 'Start'),
        el('button', { type: 'button', class: 'link', onclick: () => power('StopInstance', i.InstanceId) }, 'Stop'),
        el('button', { type: 'button', class: 'link', onclick: () => power('RebootInstance', i.InstanceId) }, 'Restart'),
        el('button', { type: 'button', class: 'link', onclick: () => resetPassword(i.InstanceId) }, 'Reset password')))));
  } catch (e) {
    $('in-message').textContent = errorText(e);
  }
}

// The console guide's last note: after a key pair is bound, a password reset lets the password log
// in beside the key, from the next restart. The password goes to the server once and is not kept here.
async function resetPassword(id) {
  const pw = el('input', { type: 'password', id: 'reset-password', autocomplete: 'new-password', required: '' });
  const again = el('input', { type: 'password', id: 'reset-password-again', autocomplete: 'new-password', required: '' });
  const body = el('div', {},
    el('p', {}, '8 to 30 characters, with three of: upper case, lower case, digits, special characters. It takes effect at the next restart; a bound key pair keeps working.'),
    el('label', {}, 'New password ', pw),
    el('label', {}, 'Again ', again));
  const done = await openDialog(`Reset the password of ${id}`, body, 'Reset', async () => {
    if (pw.value !== again.value) throw new Error('The two passwords differ.');
    await ecs('ModifyInstanceAttribute', { InstanceId: id, Password: pw.value });
    return true;
  });
  pw.value = '';
  again.value = '';
  if (done) $('in-message').textContent = `Password of ${id} reset: it takes effect at the next restart.`;
  loadInstances();
}

async function power(action, id) {
  try {
    await ecs(action, { InstanceId: id });
    $('in-message').textContent = `${action} ${id}: done.`;
  } catch (e) {
    $('in-message').textContent = errorText(e);
  }
  loadInstances();
}

// ---- audit --------------------------------------------------------------------------------------

async function loadAudit(more) {
  const params = { MaxResults: 20 };
  const action = $('au-action').value.trim();
  if (action) params.Action = action;
  if (more && state.auditToken) params.NextToken = state.auditToken;
  try {
    const r = await native('audit', params);
    state.auditToken = r.NextToken;
    const rows = r.Records.map((a) => el('tr', {},
      el('td', {}, a.Time), el('td', {}, a.Principal), el('td', {}, a.SourceIp), el('td', {}, a.Action),
      el('td', { class: 'mono' }, a.Resources.join(' ')), el('td', {}, a.Result)));
    if (more) $('au-rows').append(...rows); else $('au-rows').replaceChildren(...rows);
    $('au-more').disabled = !r.NextToken;
  } catch (e) {
    $('au-rows').replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'error' }, errorText(e))));
  }
}

// ---- routing ------------------------------------------------------------------------------------

function route() {
  if (!state.csrf) return showSignIn();
  const page = (location.hash || '#keypairs').slice(1);
  clearInterval(state.poll);
  for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== page;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${page}`) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (page === 'keypairs') loadKeyPairs();
  if (page === 'instances') {
    loadInstances();
    // The binding state changes when instances restart: keep it current without a reload.
    state.poll = setInterval(loadInstances, 2000);
  }
  if (page === 'audit') loadAudit(false);
}

window.addEventListener('DOMContentLoaded', async () => {
  $('signin-key').addEventListener('submit', (e) => { e.preventDefault(); signIn({ AccessKeyId: $('ak').value.trim(), AccessKeySecret: $('sk').value }); });
  $('signin-user').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn({ AccountId: $('account').value.trim(), UserName: $('user').value.trim(), Password: $('password').value });
  });
  $('signout').addEventListener('click', signOut);
  $('region').addEventListener('change', () => { state.region = $('region').value; state.kpPage = 1; route(); });
  $('kp-create').addEventListener('click', createKeyPair);
  $('kp-import').addEventListener('click', importKeyPair);
  $('kp-search').addEventListener('input', () => { state.kpPage = 1; loadKeyPairs(); });
  $('kp-prev').addEventListener('click', () => { state.kpPage -= 1; loadKeyPairs(); });
  $('kp-next').addEventListener('click', () => { state.kpPage += 1; loadKeyPairs(); });
  $('au-action').addEventListener('change', () => loadAudit(false));
  $('au-more').addEventListener('click', () => loadAudit(true));
  window.addEventListener('hashchange', route);
  const r = await fetch('/api/v1/session');
  if (r.ok) start(await r.json()); else showSignIn();
});
