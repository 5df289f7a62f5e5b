'use strict';

// Sessions: state events, heartbeats, close, expiry, endpoint failover, clean process exit.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Client, CreateMode, State, isConfabError } = require('..');
const { startConfabd } = require('../testing/confabd');

const MIN_TIMEOUT_MS = 500;
let server;
let observer; // a long-lived session that looks at what the others leave behind

before(async () => {
  server = await startConfabd([`--session-timeout-min-ms=${MIN_TIMEOUT_MS}`, '--tick-ms=50']);
  observer = await Client.connect({ endpoints: server.endpoint });
});

after(async () => {
  if (observer) await observer.close();
  if (server) await server.destroy();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(25);
  }
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

// A port nothing listens on.
async function deadEndpoint() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return `127.0.0.1:${port}`;
}

// Runs `code` in a child node process with this package as `confab`; resolves to its exit
// status and output, killing it (and failing) if it does not exit within `ms`.
function runChild(code, env, ms) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code], {
      env: { ...process.env, ...env, CONFAB_PKG: path.resolve(__dirname, '..') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not exit within ${ms} ms; output:\n${out}`));
    }, ms);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

test('state events, heartbeats past the timeout, close', async () => {
  const client = new Client({ endpoints: server.endpoint, sessionTimeoutMs: 600 });
  const states = [];
  client.on('state', (s) => states.push(s));
  assert.equal(client.state, null);
  await client.connect();
  assert.deepEqual(states, [State.CONNECTED]);
  assert.equal(client.sessionTimeoutMs, 600);
  assert.equal(client.endpoint, server.endpoint);
  await observer.create('/hb');
  await client.create('/hb/e', 'x', CreateMode.EPHEMERAL);
  // Idle for several timeouts: the heartbeats keep the session (and its ephemeral).
  await sleep(4 * 600);
  assert.notEqual(await observer.exists('/hb/e'), null);
  assert.equal((await client.get('/hb/e')).data.toString(), 'x');

  await client.close();
  assert.deepEqual(states, [State.CONNECTED, State.CLOSED]);
  assert.equal(await observer.exists('/hb/e'), null, 'close deletes the ephemerals');
  await client.close(); // idempotent
  await assert.rejects(client.get('/hb'), (e) => isConfabError(e, 'CLOSED'));
});

test('a session whose process stops answering expires: ephemerals go, the client sees LOST', async () => {
  await observer.create('/frozen');
  const code = `
    const { Client } = require(process.env.CONFAB_PKG);
    (async () => {
      const c = await Client.connect({ endpoints: process.env.EP, sessionTimeoutMs: 600 });
      c.on('state', (s) => { console.log('state ' + s); if (s === 'LOST') process.exitCode = 0; });
      await c.create('/frozen/e', '', 'EPHEMERAL');
      const w = c.watch('/frozen');
      await w.ready;
      console.log('ready ' + c.sessionId);
      try { for await (const ev of w) console.log('event ' + ev.type); }
      catch (e) { console.log('watch ended ' + e.code); }
      await c.get('/frozen').catch((e) => console.log('get ' + e.code));
    })();`;
  const child = spawn(process.execPath, ['-e', code], {
    env: { ...process.env, EP: server.endpoint, CONFAB_PKG: path.resolve(__dirname, '..') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const exited = new Promise((r) => child.on('exit', (c) => r(c)));
  try {
    await waitFor(() => out.includes('ready '), 5000, 'the child session');
    child.kill('SIGSTOP'); // no heartbeats now: the server expires the session
    await waitFor(async () => (await observer.exists('/frozen/e')) === null, 5000, 'the expiry');
    child.kill('SIGCONT');
    let timer;
    const status = await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000, 'timeout')))]);
    clearTimeout(timer);
    assert.equal(status, 0, `child did not exit cleanly: ${status}\n${out}`);
  } finally {
    child.kill('SIGKILL');
  }
  assert.match(out, /state LOST/);
  assert.match(out, /watch ended SESSION_EXPIRED/);
  assert.match(out, /get SESSION_EXPIRED/);
});

test('connect skips an endpoint that does not answer', async () => {
  const dead = await deadEndpoint();
  const client = await Client.connect({ endpoints: `${dead},${server.endpoint}`, connectTimeoutMs: 5000 });
  assert.equal(client.endpoint, server.endpoint);
  await client.close();
  const client2 = await Client.connect({ endpoints: [dead, server.endpoint] });
  await client2.close();
});

test('connect gives up after connectTimeoutMs when nothing answers', async () => {
  const dead = await deadEndpoint();
  const started = Date.now();
  await assert.rejects(Client.connect({ endpoints: dead, connectTimeoutMs: 700 }), (e) => isConfabError(e, 'CONNECTION_LOSS'));
  const took = Date.now() - started;
  assert.ok(took >= 600 && took < 3000, `gave up after ${took} ms`);
});

test('a process using the client exits by itself once the client is closed', async () => {
  const code = `
    const { Client } = require(process.env.CONFAB_PKG);
    (async () => {
      const c = await Client.connect({ endpoints: process.env.EP, sessionTimeoutMs: 2000 });
      await c.create('/exit-' + process.pid, 'x', 'EPHEMERAL');
      const w = c.watch('/', { recursive: true });
      await w.ready;
      await c.get('/', { watch: () => {} });
      await Promise.all(Array.from({ length: 100 }, (_, i) => c.exists('/' + i)));
      await c.close();
      console.log('closed');
    })();`;
  const started = Date.now();
  const { code: status, out } = await runChild(code, { EP: server.endpoint }, 10000);
  assert.equal(status, 0, out);
  assert.match(out, /closed/);
  assert.ok(Date.now() - started < 5000, 'the process lingered after close');
});
