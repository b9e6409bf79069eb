// keyplane console: one page, no framework, no build step. It talks to the server's native API
// with the session cookie and the session's CSRF token; ECS actions go through /api/v1/ecs/{Action},
// so RAM policies and the audit log apply exactly as to signed calls.
'use strict';

const $ = (id) => document.getElementById(id);
const KP_PAGE_SIZE = 10;
/** The most instances one AttachKeyPair or DetachKeyPair takes. */
const BIND_BATCH = 50;
const state = {
  csrf: '', region: 'cn-hangzhou', kpPage: 1, keyPairs: [], highlight: '', auditToken: '', poll: null,
  // Bumped at every sign-in and sign-out: answers to requests of an earlier session are dropped.
  session: 0,
  // Bumped by each load of a page: only the latest load draws (typing fires one load per key).
  loads: { keypairs: 0, instances: 0, audit: 0 },
  // The control to focus again once the page it lives on has been drawn anew (after a dialog).
  focusKey: '',
};

/** Thrown when the server answers 401: the sign-in screen is already showing, nothing to report. */
class SessionEnded extends Error {}

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

// ---- talking to the server ----------------------------------------------------------------------

async function json(resp) {
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401) {
    sessionEnded();
    throw new SessionEnded(body.Message || 'Your session has ended.');
  }
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

async function native(path, params = {}, method = 'GET') {
  const q = new URLSearchParams(params);
  return json(await fetch(`/api/v1/${path}?${q}`, { method, headers: { 'x-csrf-token': state.csrf } }));
}

/** Every key pair of the region, newest first (the API lists them in creation order). */
async function allKeyPairs() {
  const all = [];
  for (let n = 1; ; n += 1) {
    const r = await ecs('DescribeKeyPairs', { PageNumber: n, PageSize: 50 });
    all.push(...r.KeyPairs.KeyPair);
    if (!r.KeyPairs.KeyPair.length || all.length >= r.TotalCount) break;
  }
  return all.reverse();
}

/** Every instance of the region the caller may see, page by page. */
async function allInstances() {
  const all = [];
  let token = '';
  do {
    const r = await ecs('DescribeInstances', token ? { MaxResults: 100, NextToken: token } : { MaxResults: 100 });
    all.push(...r.Instances.Instance);
    token = r.NextToken;
  } while (token);
  return all;
}

function errorText(e) {
  return e.code ? `${e.code}: ${e.message}` : e.message;
}

/** Shows `text` in a message line: `kind` is `error`, `success` or `notice`; `source` lets a later
 * success of the same source clear a stale error (see `clearFrom`). */
function say(node, text, kind = '', source = '') {
  node.textContent = text;
  node.className = `message ${kind}`.trim();
  node.dataset.source = source;
}

function clearFrom(node, source) {
  if (node.dataset.source === source) say(node, '');
}

/** Reports a failed action in `node`, unless the session ended (the sign-in screen says so). */
function report(node, e, source = '') {
  if (!(e instanceof SessionEnded)) say(node, errorText(e), 'error', source);
}

/** Case-insensitive: any part of the text, or a pattern with `*` wildcards. */
function matcher(query) {
  const q = query.trim().toLowerCase();
  if (!q) return () => true;
  if (!q.includes('*')) return (text) => text.toLowerCase().includes(q);
  const re = new RegExp(`^${q.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i');
  return (text) => re.test(text);
}

// ---- dialog -------------------------------------------------------------------------------------

/** Focuses the control named `key` if focus was lost (the page was drawn anew under it). */
function restoreFocus() {
  if (!state.focusKey) return;
  const target = document.querySelector(`[data-focus-key="${CSS.escape(state.focusKey)}"]`);
  // Lost: on the page's body, or still on a button of the dialog that just closed.
  const at = document.activeElement;
  const d = $('dialog');
  if (target && (!at || at === document.body || (!d.open && d.contains(at)))) {
    target.focus();
    state.focusKey = '';
  }
}

/**
 * A modal dialog; resolves with what `onOk` returns, or null when cancelled. OK is disabled while
 * `onOk` runs, so a double click sends one request. `opts.focus === 'cancel'` starts on Cancel
 * (prompts whose OK does something hard to undo: Enter pressed twice must not do it).
 */
function openDialog(title, body, okLabel, onOk, opts = {}) {
  const d = $('dialog');
  const ok = $('dialog-ok');
  const cancel = $('dialog-cancel');
  const opener = document.activeElement;
  const returnKey = opts.returnKey || (opener && opener.dataset && opener.dataset.focusKey) || '';
  $('dialog-title').textContent = title;
  $('dialog-body').replaceChildren(body);
  $('dialog-error').textContent = '';
  ok.textContent = okLabel;
  ok.hidden = !onOk;
  ok.disabled = false;
  ok.className = opts.danger ? 'danger' : '';
  cancel.textContent = opts.cancelLabel || 'Cancel';
  return new Promise((resolve) => {
    let done = false;
    let busy = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      d.onclose = null;
      if (d.open) d.close();
      state.focusKey = returnKey;
      if (opener && opener.isConnected && !opts.chained) opener.focus();
      restoreFocus();
      resolve(v);
    };
    cancel.onclick = () => { if (!busy) finish(null); };
    // Escape while a request is in flight would lose its answer: wait for it.
    d.oncancel = (ev) => { ev.preventDefault(); if (!busy) finish(null); };
    // A close event is queued: the one of the dialog before this one (bind, then the restart
    // prompt in the same element) arrives while this one is open, and is not for it.
    d.onclose = () => { if (!d.open) finish(null); };
    $('dialog-form').onsubmit = async (ev) => {
      ev.preventDefault();
      if (busy || done || !onOk) return;
      busy = true;
      ok.disabled = true;
      $('dialog-error').textContent = '';
      try {
        const v = await onOk();
        busy = false;
        finish(v);
      } catch (e) {
        busy = false;
        if (!(e instanceof SessionEnded)) $('dialog-error').textContent = errorText(e);
      } finally {
        if (!done) ok.disabled = false;
      }
    };
    if (!d.open) d.showModal();
    const first = opts.focus === 'cancel' ? cancel : body.querySelector('input, textarea, li[tabindex="0"], button');
    (first || ok).focus();
  });
}

// ---- sign in ------------------------------------------------------------------------------------

function clearSecrets() {
  $('sk').value = '';
  $('password').value = '';
}

async function signIn(payload) {
  say($('signin-error'), '');
  try {
    const resp = await fetch('/api/v1/session', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(body.Message || `HTTP ${resp.status}`);
    clearSecrets();
    start(body);
  } catch (e) {
    say($('signin-error'), e.message, 'error');
    $('signin-error').scrollIntoView({ block: 'nearest' });
  }
}

function start(s) {
  state.session += 1;
  state.csrf = s.CsrfToken;
  $('who').textContent = `${s.Principal} · ${s.AccountId}`;
  say($('signin-error'), '');
  $('signin').hidden = true;
  $('topbar').hidden = false;
  if (!location.hash || location.hash === '#signin') location.hash = '#keypairs';
  route();
}

async function signOut() {
  const csrf = state.csrf;
  state.csrf = '';
  state.session += 1;
  await fetch('/api/v1/session', { method: 'DELETE', headers: { 'x-csrf-token': csrf } }).catch(() => {});
  history.replaceState(null, '', location.pathname);
  showSignIn('You have signed out.', 'notice');
}

/** A 401 from the server: the session expired, the server restarted, or another tab signed out. */
function sessionEnded() {
  if (!state.csrf) return;
  state.csrf = '';
  state.session += 1;
  showSignIn('Your session has ended; sign in again.', 'notice');
}

function showSignIn(message, kind) {
  clearInterval(state.poll);
  state.poll = null;
  const d = $('dialog');
  if (d.open) d.close();
  for (const p of document.querySelectorAll('.page')) p.hidden = true;
  for (const rows of ['kp-rows', 'in-rows', 'au-rows']) $(rows).replaceChildren();
  $('topbar').hidden = true;
  $('signin').hidden = false;
  clearSecrets();
  if (message !== undefined) say($('signin-error'), message, kind);
  ($('ak').value ? $('sk') : $('ak')).focus();
}

// ---- key pairs ----------------------------------------------------------------------------------

/** Breaks a fingerprint only between its bytes, never inside one. */
function fingerprint(fp) {
  const parts = [];
  for (const [k, byte] of fp.split(':').entries()) {
    if (k) parts.push(':', el('wbr'));
    parts.push(byte);
  }
  return parts;
}

/** A table cell; `data-label` names it where a phone shows each row as a card. */
function cell(label, attrs, ...children) {
  return el('td', { 'data-label': label, ...attrs }, el('span', { class: 'v' }, ...children));
}

async function loadKeyPairs() {
  const load = ++state.loads.keypairs;
  const session = state.session;
  const msg = $('kp-message');
  try {
    const [kps, instances] = await Promise.all([allKeyPairs(), native('instances', { RegionId: state.region })]);
    if (load !== state.loads.keypairs || session !== state.session) return;
    const search = $('kp-search').value;
    const matches = matcher(search);
    state.keyPairs = kps.filter((kp) => matches(kp.KeyPairName));
    const bound = new Map();
    for (const i of instances.Instances) if (i.KeyPairName) bound.set(i.KeyPairName, (bound.get(i.KeyPairName) || 0) + 1);
    const pages = Math.max(1, Math.ceil(state.keyPairs.length / KP_PAGE_SIZE));
    state.kpPage = Math.min(Math.max(1, state.kpPage), pages);
    const shown = state.keyPairs.slice((state.kpPage - 1) * KP_PAGE_SIZE, state.kpPage * KP_PAGE_SIZE);
    const rows = shown.map((kp) => {
      const name = kp.KeyPairName;
      return el('tr', { 'data-name': name, class: name === state.highlight ? 'new' : '' },
        cell('Name', { class: 'name' }, name),
        cell('ID', { class: 'mono id' }, kp.KeyPairId),
        cell('Fingerprint', { class: 'mono fp' }, ...fingerprint(kp.KeyPairFingerPrint)),
        cell('Created', {}, kp.CreationTime),
        cell('Bound instances', { class: 'bound' }, bound.get(name) || 0),
        cell('Actions', { class: 'actions' },
          el('button', { type: 'button', class: 'link', 'data-focus-key': `kp:${name}:bind`, onclick: () => bindDialog(name, 'bind') }, 'Bind'),
          el('button', { type: 'button', class: 'link', 'data-focus-key': `kp:${name}:unbind`, onclick: () => bindDialog(name, 'unbind') }, 'Unbind'),
          el('button', { type: 'button', class: 'link', 'data-focus-key': `kp:${name}:revoke`, onclick: () => revokeKeyPair(name) }, 'Revoke'),
          el('button', { type: 'button', class: 'link', 'data-focus-key': `kp:${name}:delete`, onclick: () => deleteKeyPair(name) }, 'Delete')));
    });
    if (!rows.length) {
      const text = search.trim() ? `No key pair in this region matches "${search.trim()}".` : 'No key pairs in this region yet: create or import one.';
      rows.push(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, text)));
    }
    $('kp-rows').replaceChildren(...rows);
    $('kp-page').textContent = `Page ${state.kpPage} of ${pages} (${state.keyPairs.length} key pairs)`;
    $('kp-prev').disabled = state.kpPage <= 1;
    $('kp-next').disabled = state.kpPage >= pages;
    clearFrom(msg, 'load');
    restoreFocus();
  } catch (e) {
    if (load === state.loads.keypairs) report(msg, e, 'load');
  }
}

function download(name, text) {
  const a = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/x-pem-file' })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

/** After a create or an import: the new key pair is first in the list; show it whatever the search. */
function showNewKeyPair(name) {
  $('kp-search').value = '';
  state.kpPage = 1;
  state.highlight = name;
  loadKeyPairs();
}

async function createKeyPair() {
  const name = el('input', { id: 'new-kp-name', required: true, autocomplete: 'off' });
  const body = el('div', {},
    el('label', {}, 'Key pair name', name),
    el('p', { class: 'warning' }, 'The private key is downloaded once, now. keyplane does not keep it: it cannot be downloaded again.'));
  const created = await openDialog('Create SSH Key Pair', body, 'OK', () => ecs('CreateKeyPair', { KeyPairName: name.value.trim() }));
  if (created) {
    download(`${created.KeyPairName}.pem`, created.PrivateKeyBody);
    say($('kp-message'), `Created ${created.KeyPairName}; its private key was downloaded as ${created.KeyPairName}.pem.`, 'success');
    showNewKeyPair(created.KeyPairName);
  }
}

async function importKeyPair() {
  const name = el('input', { id: 'import-name', required: true, autocomplete: 'off' });
  const key = el('textarea', { id: 'import-key', required: true, placeholder: 'ssh-ed25519 AAAA… user@host' });
  const body = el('div', {}, el('label', {}, 'Key pair name', name), el('label', {}, 'Public key', key));
  const done = await openDialog('Import SSH Key Pair', body, 'OK',
    () => ecs('ImportKeyPair', { KeyPairName: name.value.trim(), PublicKeyBody: key.value }));
  if (done) {
    say($('kp-message'), `Imported ${done.KeyPairName} (${done.KeyPairFingerPrint}).`, 'success');
    showNewKeyPair(done.KeyPairName);
  }
}

async function deleteKeyPair(name) {
  const ok = await openDialog('Delete SSH Key Pair', el('p', {}, `Delete the key pair ${name}?`), 'Delete',
    () => ecs('DeleteKeyPairs', { KeyPairNames: JSON.stringify([name]) }), { focus: 'cancel', danger: true });
  if (ok) {
    say($('kp-message'), `Deleted ${name}.`, 'success');
    state.focusKey = '';
    $('kp-search').focus();
    loadKeyPairs();
  }
}

// Revocation (SPEC section 15): every binding and grant of the key pair ends, and every host refuses
// the key from now on, copies added by hand included.
async function revokeKeyPair(name) {
  const body = el('p', {}, `Revoke ${name} everywhere? Every binding and grant of it in this account ends now, and every host refuses its key, also where someone added it by hand. It cannot be bound or granted again until it is unrevoked (keyplane access unrevoke-key).`);
  const ok = await openDialog('Revoke SSH Key Pair', body, 'Revoke',
    () => native('revoked-keys', { Region: state.region, KeyPairName: name }, 'POST'), { focus: 'cancel', danger: true });
  if (ok) {
    say($('kp-message'), `Revoked ${name}: no host accepts its key any more.`, 'success');
    loadKeyPairs();
  }
}

/** A grant as the Instances page shows it: the user, until when, and how it stands. */
function grantText(g) {
  const until = g.ExpiresAt ? ` until ${g.ExpiresAt.replace('T', ' ').replace('Z', ' UTC')}` : '';
  return `${g.OsUser} (${g.KeyPairName}${until}, ${g.State})`;
}

function instanceLabel(i) {
  return `${i.InstanceName} (${i.InstanceId})`;
}

// The two-list selector of the console guide: Select Instance on the left, Selected on the right.
// Each list has a search (any part of the name or ID, any case) and a select-all of what it shows;
// click toggles an instance, Shift+click selects the range from the last one clicked; the arrow
// keys move through a list (Shift+arrow selects as it goes), Space or Enter toggles, Ctrl+A selects
// all shown.
function picker(instances, showKeyPair) {
  const items = instances.map((i) => ({ i, side: 'left', selected: false, windows: i.OSType === 'windows' }));
  const sides = {};
  const render = (side) => {
    const s = sides[side];
    const match = matcher(s.search.value);
    const focusedId = s.list.contains(document.activeElement) ? document.activeElement.dataset.id : '';
    s.shown = items.filter((it) => it.side === side && (match(it.i.InstanceName) || match(it.i.InstanceId)));
    if (s.active >= s.shown.length) s.active = Math.max(0, s.shown.length - 1);
    s.list.replaceChildren(...s.shown.map((it, k) => {
      const key = showKeyPair ? ` · key pair: ${it.i.KeyPairName || 'none'}` : '';
      return el('li', {
        role: 'option', tabindex: k === s.active ? 0 : -1, 'data-id': it.i.InstanceId, 'data-status': it.i.Status,
        'data-index': k, 'aria-selected': String(it.selected), 'aria-disabled': String(it.windows),
        title: it.windows ? 'Windows instances cannot use SSH key pairs' : '',
      }, `${instanceLabel(it.i)} · ${it.i.Status}${it.windows ? ' · Windows' : ''}${key}`);
    }));
    if (!s.shown.length) {
      s.list.append(el('li', { class: 'empty', role: 'presentation' },
        s.search.value.trim() ? 'No instance matches the search.' : side === 'left' ? 'No instances to select.' : 'None selected yet.'));
    }
    const selectable = s.shown.filter((it) => !it.windows);
    s.all.checked = selectable.length > 0 && selectable.every((it) => it.selected);
    s.all.disabled = !selectable.length;
    const selected = items.filter((it) => it.side === side && it.selected).length;
    s.count.textContent = `${s.shown.length} shown · ${selected} marked`;
    if (focusedId) {
      const li = s.list.querySelector(`li[data-id="${CSS.escape(focusedId)}"]`);
      if (li) li.focus();
    }
  };
  const renderAll = () => { render('left'); render('right'); };
  const setActive = (side, k) => {
    const s = sides[side];
    s.active = k;
    for (const li of s.list.querySelectorAll('li[data-index]')) li.tabIndex = Number(li.dataset.index) === k ? 0 : -1;
    const li = s.list.querySelector(`li[data-index="${k}"]`);
    if (li) { li.focus(); li.scrollIntoView({ block: 'nearest' }); }
  };
  const selectRange = (side, from, to) => {
    const s = sides[side];
    const [a, b] = from < to ? [from, to] : [to, from];
    for (const it of s.shown.slice(a, b + 1)) if (!it.windows) it.selected = true;
  };
  const makeSide = (side, label) => {
    const list = el('ul', { id: `pick-${side}`, role: 'listbox', 'aria-multiselectable': 'true', 'aria-labelledby': `pick-${side}-label` });
    const search = el('input', { type: 'search', id: `pick-${side}-search`, placeholder: 'name or ID', 'aria-label': `Search ${label}`, autocomplete: 'off' });
    const all = el('input', { type: 'checkbox', id: `pick-${side}-all` });
    const count = el('span', { class: 'count', id: `pick-${side}-count` });
    const s = { list, search, all, count, shown: [], active: 0, anchor: 0 };
    sides[side] = s;
    search.addEventListener('input', () => { s.active = 0; render(side); });
    // Enter in the search must not submit the dialog.
    search.addEventListener('keydown', (e) => { if (e.key === 'Enter') e.preventDefault(); });
    all.addEventListener('change', () => {
      for (const it of s.shown) if (!it.windows) it.selected = all.checked;
      render(side);
    });
    list.addEventListener('click', (e) => {
      const li = e.target.closest('li[data-index]');
      if (!li) return;
      const k = Number(li.dataset.index);
      const it = s.shown[k];
      if (e.shiftKey) selectRange(side, s.anchor, k);
      else if (!it.windows) it.selected = !it.selected;
      s.anchor = k;
      s.active = k;
      render(side);
      setActive(side, k);
    });
    list.addEventListener('keydown', (e) => {
      const li = e.target.closest('li[data-index]');
      if (!li) return;
      const k = Number(li.dataset.index);
      const last = s.shown.length - 1;
      const to = { ArrowDown: Math.min(k + 1, last), ArrowUp: Math.max(k - 1, 0), Home: 0, End: last }[e.key];
      if (to !== undefined) {
        e.preventDefault();
        if (e.shiftKey) { selectRange(side, s.anchor, to); render(side); } else s.anchor = to;
        setActive(side, to);
      } else if (e.key === ' ' || e.key === 'Enter') {
        e.preventDefault();
        const it = s.shown[k];
        if (!it.windows) it.selected = !it.selected;
        s.anchor = k;
        render(side);
        setActive(side, k);
      } else if (e.key === 'a' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        for (const x of s.shown) if (!x.windows) x.selected = true;
        render(side);
        setActive(side, k);
      }
    });
    return el('div', { class: 'pick-side' },
      el('p', { id: `pick-${side}-label`, class: 'pick-label' }, label),
      search,
      el('label', { class: 'check' }, all, 'Select all shown'),
      list, count);
  };
  const move = (from, to) => () => {
    for (const it of items) if (it.side === from && it.selected) { it.side = to; it.selected = false; }
    renderAll();
  };
  const node = el('div', { class: 'picker' },
    makeSide('left', 'Select Instance'),
    el('div', { class: 'moves' },
      el('button', { type: 'button', id: 'pick-add', 'aria-label': 'Move to Selected', onclick: move('left', 'right') }, '>'),
      el('button', { type: 'button', id: 'pick-remove', 'aria-label': 'Move back', onclick: move('right', 'left') }, '<')),
    makeSide('right', 'Selected'));
  renderAll();
  node.selected = () => items.filter((it) => it.side === 'right').map((it) => it.i);
  return node;
}

async function bindDialog(name, mode) {
  const returnKey = `kp:${name}:${mode}`;
  const msg = $('kp-message');
  let instances;
  try {
    instances = (await allInstances()).filter((i) => mode === 'bind' || i.KeyPairName === name);
  } catch (e) {
    report(msg, e);
    return;
  }
  const p = picker(instances, mode === 'bind');
  const note = mode === 'bind'
    ? 'Binding replaces the key pair an instance already has and turns password login off on it. Windows instances are dimmed: they cannot use SSH key pairs. The change takes effect when an instance restarts.'
    : 'Unbinding removes the key pair from these instances when they restart.';
  const body = el('div', {}, el('p', { class: 'note', id: 'bind-note' }, note), p);
  const action = mode === 'bind' ? 'AttachKeyPair' : 'DetachKeyPair';
  const result = await openDialog(`${mode === 'bind' ? 'Bind' : 'Unbind'} key pair ${name}`, body, 'OK', async () => {
    const chosen = p.selected();
    if (!chosen.length) throw new Error('Select at least one instance and move it to Selected with >.');
    // The API takes at most 50 instances a call (as the vendor's): larger selections go in batches.
    const results = [];
    for (let k = 0; k < chosen.length; k += BIND_BATCH) {
      const ids = chosen.slice(k, k + BIND_BATCH).map((c) => c.InstanceId);
      try {
        const r = await ecs(action, { KeyPairName: name, InstanceIds: JSON.stringify(ids) });
        results.push(...r.Results.Result);
      } catch (e) {
        // A whole batch refused after others went through: report it per instance, not as a
        // dialog error that would hide what was already done.
        if (e instanceof SessionEnded || k === 0) throw e;
        results.push(...ids.map((id) => ({ InstanceId: id, Success: 'false', Code: e.code || e.message })));
      }
    }
    return { results, chosen };
  }, { returnKey, chained: true });
  if (!result) return;
  const { results } = result;
  const failed = results.filter((x) => x.Success !== 'true');
  const okIds = new Set(results.filter((x) => x.Success === 'true').map((x) => x.InstanceId));
  const done = result.chosen.filter((c) => okIds.has(c.InstanceId));
  const running = done.filter((c) => c.Status === 'Running');
  const stopped = done.filter((c) => c.Status !== 'Running');
  let text = `${action}: ${okIds.size} done`;
  text += failed.length ? `, ${failed.length} failed: ${failed.map((f) => `${f.InstanceId} ${f.Code}`).join('; ')}` : '.';
  if (stopped.length && !running.length) text += ' Stopped instances take the change at their next start.';
  say(msg, text, failed.length ? 'error' : 'success');
  loadKeyPairs();
  if (running.length) restartPrompt(running, stopped, returnKey);
}

// Step 7 of the console guide: Running instances take the change at their next restart. The prompt
// starts on "Not now", so Enter pressed again after OK does not restart anything.
async function restartPrompt(running, stopped, returnKey) {
  const body = el('div', {},
    el('p', {}, `The change takes effect when ${running.length === 1 ? 'this Running instance restarts' : `these ${running.length} Running instances restart`}:`),
    el('ul', { id: 'restart-list', class: 'names' }, ...running.map((i) => el('li', { 'data-id': i.InstanceId }, instanceLabel(i)))));
  if (stopped.length) {
    body.append(el('p', { id: 'restart-stopped' },
      `Not running, so not restarted: ${stopped.map(instanceLabel).join(', ')}. ${stopped.length === 1 ? 'It takes' : 'They take'} the change at ${stopped.length === 1 ? 'its' : 'their'} next start.`));
  }
  const done = await openDialog('Restart instances?', body, 'Restart', async () => {
    const failures = [];
    for (const i of running) {
      try {
        await ecs('RebootInstance', { InstanceId: i.InstanceId });
      } catch (e) {
        if (e instanceof SessionEnded) throw e;
        failures.push(`${i.InstanceId} ${errorText(e)}`);
      }
    }
    return { failures };
  }, { focus: 'cancel', cancelLabel: 'Not now', returnKey });
  if (!done) return;
  const restarted = running.length - done.failures.length;
  if (done.failures.length) say($('kp-message'), `Restarted ${restarted} instance(s); failed: ${done.failures.join('; ')}`, 'error');
  else say($('kp-message'), `Restarted ${restarted} instance(s).`, 'success');
}

// ---- instances ----------------------------------------------------------------------------------

/** The actions an instance's state allows, as the vendor console offers them. */
function powerButtons(i) {
  const b = (label, onclick) => el('button', { type: 'button', class: 'link', 'data-focus-key': `in:${i.InstanceId}:${label}`, onclick }, label);
  const out = [];
  if (i.Status === 'Stopped') out.push(b('Start', () => power('StartInstance', i)));
  if (i.Status === 'Running') {
    out.push(b('Stop', () => power('StopInstance', i)));
    out.push(b('Restart', () => power('RebootInstance', i)));
  }
  out.push(b('Reset password', () => resetPassword(i.InstanceId)));
  return out;
}

function instanceRow(i, grants) {
  const live = grants.filter((g) => g.State !== 'revoked' && g.State !== 'expired');
  return el('tr', { 'data-id': i.InstanceId },
    cell('Instance', { class: 'name' }, `${i.InstanceName} `, el('span', { class: 'mono id' }, i.InstanceId)),
    cell('Status', { class: 'status' }, i.Status),
    cell('OS', {}, i.OsName || i.OsType),
    cell('Key pair', { class: 'name' }, i.KeyPairName || '—'),
    cell('Binding state', {}, el('span', { class: `state ${i.BindingState}` }, i.BindingState), i.BindingError ? ` ${i.BindingError}` : ''),
    cell('Grants', { class: 'grants' }, ...(live.length ? live.map((g) => el('div', {}, grantText(g))) : ['—'])),
    cell('Actions', { class: 'actions' }, ...powerButtons(i)));
}

// Drawn in place: rows that did not change are left alone, so the poll never takes the focus (or
// a half-typed selection) away from the user.
async function loadInstances() {
  const load = ++state.loads.instances;
  const session = state.session;
  const msg = $('in-message');
  try {
    const [r, granted] = await Promise.all([
      native('instances', { RegionId: state.region }),
      native('grants', { Region: state.region }).catch(() => ({ Grants: [] })),
    ]);
    if (load !== state.loads.instances || session !== state.session) return;
    const grantsOf = new Map();
    for (const g of granted.Grants) grantsOf.set(g.InstanceId, [...(grantsOf.get(g.InstanceId) || []), g]);
    const tbody = $('in-rows');
    const old = new Map([...tbody.querySelectorAll('tr[data-id]')].map((tr) => [tr.dataset.id, tr]));
    const focusKey = document.activeElement && tbody.contains(document.activeElement) ? document.activeElement.dataset.focusKey : '';
    const rows = r.Instances.map((i) => {
      const grants = grantsOf.get(i.InstanceId) || [];
      const sig = JSON.stringify([i.InstanceName, i.Status, i.OsName, i.OsType, i.KeyPairName, i.BindingState, i.BindingError, grants.map(grantText)]);
      const prev = old.get(i.InstanceId);
      if (prev && prev.dataset.sig === sig) return prev;
      const tr = instanceRow(i, grants);
      tr.dataset.sig = sig;
      return tr;
    });
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 7, class: 'empty' }, 'No instances in this region.')));
    const current = [...tbody.children];
    if (current.length === rows.length && current.every((tr, k) => tr.dataset.id && tr.dataset.id === rows[k].dataset.id)) {
      current.forEach((tr, k) => { if (tr !== rows[k]) tr.replaceWith(rows[k]); });
    } else if (current.length !== rows.length || current.some((tr, k) => tr !== rows[k])) {
      tbody.replaceChildren(...rows);
    }
    if (focusKey && !tbody.contains(document.activeElement)) {
      const again = tbody.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
    clearFrom(msg, 'poll');
    restoreFocus();
  } catch (e) {
    if (load === state.loads.instances) report(msg, e, 'poll');
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
  if (done) say($('in-message'), `Password of ${id} reset: it takes effect at the next restart.`, 'success');
  loadInstances();
}

const POWER = {
  StartInstance: { verb: 'Start', done: 'started' },
  StopInstance: { verb: 'Stop', done: 'stopping', confirm: 'Stop Instance', text: 'Stop %s? Its services go offline until it is started again.' },
  RebootInstance: { verb: 'Restart', done: 'restarting', confirm: 'Restart Instance', text: 'Restart %s? It is offline while it restarts, and takes any pending key pair or password change.' },
};

async function power(action, i) {
  const p = POWER[action];
  const msg = $('in-message');
  const run = () => ecs(action, { InstanceId: i.InstanceId });
  if (p.confirm) {
    const done = await openDialog(p.confirm, el('p', { id: 'power-confirm' }, p.text.replace('%s', instanceLabel(i))), p.verb,
      async () => { await run(); return true; }, { focus: 'cancel', danger: true });
    if (!done) return;
  } else {
    try {
      await run();
    } catch (e) {
      report(msg, e);
      return;
    }
  }
  say(msg, `${p.verb} ${instanceLabel(i)}: ${p.done}.`, 'success');
  loadInstances();
}

// ---- audit --------------------------------------------------------------------------------------

async function loadAudit(more) {
  const load = ++state.loads.audit;
  const session = state.session;
  const params = { MaxResults: 20, Order: 'NewestFirst' };
  const action = $('au-action').value.trim();
  if (action) params.Action = action;
  if (more && state.auditToken) params.NextToken = state.auditToken;
  try {
    const r = await native('audit', params);
    if (load !== state.loads.audit || session !== state.session) return;
    state.auditToken = r.NextToken;
    const rows = r.Records.map((a) => el('tr', {},
      cell('Time', { class: 'time' }, a.Time), cell('Principal', {}, a.Principal), cell('Source IP', {}, a.SourceIp),
      cell('Action', {}, a.Action), cell('Resources', { class: 'mono resources' }, a.Resources.join(' ')),
      cell('Result', { class: a.Result === 'OK' ? '' : 'error' }, a.Result)));
    if (!more && !rows.length) {
      rows.push(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, action ? `No records of the action "${action}".` : 'No records yet.')));
    }
    if (more) $('au-rows').append(...rows); else $('au-rows').replaceChildren(...rows);
    $('au-more').disabled = !r.NextToken;
    say($('au-message'), '');
  } catch (e) {
    if (load === state.loads.audit) report($('au-message'), e);
  }
}

// ---- routing ------------------------------------------------------------------------------------

function route() {
  if (!state.csrf) return showSignIn();
  const page = (location.hash || '#keypairs').slice(1);
  clearInterval(state.poll);
  state.poll = null;
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
  $('kp-search').addEventListener('input', () => { state.kpPage = 1; state.highlight = ''; loadKeyPairs(); });
  $('kp-prev').addEventListener('click', () => { state.kpPage -= 1; loadKeyPairs(); });
  $('kp-next').addEventListener('click', () => { state.kpPage += 1; loadKeyPairs(); });
  $('au-action').addEventListener('input', () => loadAudit(false));
  $('au-more').addEventListener('click', () => loadAudit(true));
  // The second click of a double click (detail 2) on a dialog's OK is not a second OK: it would
  // otherwise land on the next dialog's OK (Bind's OK is where the restart prompt's Restart is).
  $('dialog-ok').addEventListener('click', (e) => { if (e.detail > 1) e.preventDefault(); });
  window.addEventListener('hashchange', route);
  const r = await fetch('/api/v1/session');
  if (r.ok) start(await r.json()); else showSignIn();
});
