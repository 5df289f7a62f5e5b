'use strict';

// Reconnecting across a server restart (SIGTERM, then confabd again on the same data directory and
// port): the session, its ephemerals and its watches survive, and a resumed watch misses nothing
// and repeats nothing.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { Client, Op, CreateMode, State, isConfabError } = require('..');
const { startConfabd } = require('../testing/confabd');

let server;

before(async () => {
  server = await startConfabd();
});

after(async () => {
  if (server) await server.destroy();
});

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function nextState(client, wanted, ms = 10000) {
  return withTimeout(
    new Promise((resolve) => {
      const on = (s) => {
        if (s === wanted) {
          client.off('state', on);
          resolve(Date.now());
        }
      };
      client.on('state', on);
    }),
    ms,
    `state ${wanted}`,
  );
}

async function take(iterator, n, ms = 10000) {
  const out = [];
  while (out.length < n) {
    const next = await withTimeout(iterator.next(), ms, `event ${out.length + 1} of ${n}`);
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

async function deadEndpoint() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return `127.0.0.1:${port}`;
}

const ev = (type, path, zxid) => ({ type, path, zxid });

test('restart: session, ephemerals and a recursive watch resume with no missed or repeated event', async () => {
  // The watcher comes back slowly (1.5 s) and goes through a dead endpoint first, so that changes
  // made after the restart and before it is back have to be replayed; the writer comes back fast.
  const watcher = new Client({
    endpoints: [server.endpoint, await deadEndpoint()],
    sessionTimeoutMs: 15000,
    reconnectDelayMs: 1500,
    maxReconnectDelayMs: 1500,
  });
  const states = [];
  watcher.on('state', (s) => states.push(s));
  await watcher.connect();
  const writer = await Client.connect({ endpoints: server.endpoint, sessionTimeoutMs: 15000, reconnectDelayMs: 50 });
  try {
    const id = watcher.sessionId;
    await writer.create('/app');
    await writer.create('/app/config', 'v0');
    await writer.create('/app/members');
    const eph = await watcher.create('/app/members/m-', 'me', { mode: CreateMode.EPHEMERAL_SEQUENTIAL });
    const watch = watcher.watch('/app/config', { recursive: true });
    await watch.ready;
    const oneShotEvents = [];
    await watcher.get('/app/config', { watch: (e) => oneShotEvents.push(e) });

    const expected = [];
    const w1 = await writer.set('/app/config', 'v1');
    expected.push(ev('NODE_DATA_CHANGED', '/app/config', w1.zxid));
    const w2 = await writer.create('/app/config/a', 'a');
    expected.push(ev('NODE_CREATED', '/app/config/a', w2.zxid));
    assert.deepEqual(await take(watch, 2), expected, 'events before the restart');
    // A second watch overlapping the first: each gets its own events, once.
    const nodeWatch = watcher.watch('/app/config/a');
    await nodeWatch.ready;
    assert.equal(oneShotEvents.length, 1);
    // Re-arm the one-shot watch: it must fire, once, for a change made while the watcher is away.
    await watcher.get('/app/config', { watch: (e) => oneShotEvents.push(e) });

    const writerBack = nextState(writer, State.RECONNECTED);
    const watcherBack = nextState(watcher, State.RECONNECTED);
    await server.restart(); // SIGTERM, then the same data directory and port
    await writerBack;

    // While the watcher is away: a data change, a create, and a multi whose three events share
    // one zxid.
    const m1 = await writer.set('/app/config', 'v2');
    expected.push(ev('NODE_DATA_CHANGED', '/app/config', m1.zxid));
    const m2 = await writer.create('/app/config/b');
    expected.push(ev('NODE_CREATED', '/app/config/b', m2.zxid));
    const m3 = await writer.multi([
      Op.create('/app/config/c'),
      Op.set('/app/config/a', 'a2'),
      Op.delete('/app/config/b'),
    ]);
    expected.push(ev('NODE_CREATED', '/app/config/c', m3.zxid));
    expected.push(ev('NODE_DATA_CHANGED', '/app/config/a', m3.zxid));
    expected.push(ev('NODE_DELETED', '/app/config/b', m3.zxid));
    const awayDone = Date.now();
    // A read issued while suspended waits for the session to come back.
    assert.equal(watcher.state, State.SUSPENDED);
    const suspendedRead = watcher.get('/app/config/a');

    const backAt = await watcherBack;
    assert.ok(backAt > awayDone, 'the watcher came back before the changes made while it was away');
    assert.deepEqual(states, [State.CONNECTED, State.SUSPENDED, State.RECONNECTED]);
    assert.equal(watcher.sessionId, id, 'the session was resumed, not replaced');
    assert.equal((await suspendedRead).data.toString(), 'a2');

    // After the resume: live again.
    const l1 = await writer.set('/app/config/c', 'c1');
    expected.push(ev('NODE_DATA_CHANGED', '/app/config/c', l1.zxid));
    const l2 = await writer.delete('/app/config/c');
    expected.push(ev('NODE_DELETED', '/app/config/c', l2.zxid));
    const l3 = await writer.set('/app/config/a', 'a3');
    expected.push(ev('NODE_DATA_CHANGED', '/app/config/a', l3.zxid));

    const got = [...expected.slice(0, 2), ...(await take(watch, expected.length - 2))];
    assert.deepEqual(got, expected);
    // Nothing more (no duplicate) comes.
    const extra = watch.next();
    const more = await Promise.race([extra, new Promise((r) => setTimeout(r, 300, 'none'))]);
    assert.equal(more, 'none', `unexpected event ${JSON.stringify(more, (k, v) => (typeof v === 'bigint' ? String(v) : v))}`);

    assert.deepEqual(await take(nodeWatch, 2), [
      ev('NODE_DATA_CHANGED', '/app/config/a', m3.zxid),
      ev('NODE_DATA_CHANGED', '/app/config/a', l3.zxid),
    ]);
    const nodeExtra = await Promise.race([nodeWatch.next(), new Promise((r) => setTimeout(r, 100, 'none'))]);
    assert.equal(nodeExtra, 'none');
    await nodeWatch.close();

    // The one-shot watch armed before the restart fired once, for the first change while away.
    assert.deepEqual(oneShotEvents.slice(1), [ev('NODE_DATA_CHANGED', '/app/config', m1.zxid)]);

    // The ephemeral survived, still owned by the session.
    const stat = await writer.exists(eph.path);
    assert.notEqual(stat, null, 'the ephemeral did not survive the restart');
    assert.equal(stat.ephemeralOwner, id);

    await watch.close();
    assert.deepEqual(await extra, { value: undefined, done: true });
    await watcher.close();
    assert.equal(await writer.exists(eph.path), null);
  } finally {
    await watcher.close();
    await writer.close();
  }
});

test('a write in flight when the server goes away fails with CONNECTION_LOSS; the session goes on', async () => {
  const client = await Client.connect({ endpoints: server.endpoint, sessionTimeoutMs: 15000, reconnectDelayMs: 50 });
  try {
    await client.create('/inflight', '0');
    const back = nextState(client, State.RECONNECTED);
    // A stream of writes, one after the other, until the server is restarted under them.
    let lost = null;
    let applied = 0;
    const writes = (async () => {
      for (let i = 1; i < 100000 && !lost; i++) {
        try {
          await client.set('/inflight', String(i));
          applied = i;
        } catch (e) {
          lost = e;
        }
      }
    })();
    while (applied < 20) await new Promise((r) => setTimeout(r, 5));
    await server.restart();
    await withTimeout(writes, 10000, 'the writes to stop');
    await back;
    assert.ok(isConfabError(lost, 'CONNECTION_LOSS') || isConfabError(lost, 'UNAVAILABLE'), `got ${lost}`);
    // The session works after the restart.
    const after = await client.set('/inflight', 'after');
    assert.ok(after.stat.version > applied);
  } finally {
    await client.close();
  }
});
