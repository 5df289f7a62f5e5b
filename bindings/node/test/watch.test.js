'use strict';

// Watches: one-shot callbacks on get/exists/getChildren, persistent and recursive watches as
// async iterators.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client, Op, isConfabError } = require('..');
const { startConfabd } = require('../testing/confabd');

let server;
let client; // the watcher
let writer; // another session making changes

before(async () => {
  server = await startConfabd();
  client = await Client.connect({ endpoints: server.endpoint });
  writer = await Client.connect({ endpoints: server.endpoint });
});

after(async () => {
  if (client) await client.close();
  if (writer) await writer.close();
  if (server) await server.destroy();
});

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A one-shot watch callback as a promise of its event, plus a count of its calls.
function oneShot() {
  const calls = [];
  let resolve;
  const fired = new Promise((r) => {
    resolve = r;
  });
  const callback = (ev) => {
    calls.push(ev);
    resolve(ev);
  };
  return { callback, calls, fired: (ms = 5000) => withTimeout(fired, ms, 'a watch event') };
}

// Takes `n` events from an async iterator (bounded wait).
async function take(iterator, n, ms = 5000) {
  const out = [];
  while (out.length < n) {
    const next = await withTimeout(iterator.next(), ms, `event ${out.length + 1} of ${n}`);
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

// Nothing more arrives within `ms` (the iterator must not be ended by this).
async function quiet(iterator, ms = 300) {
  const next = iterator.next();
  const got = await Promise.race([next, new Promise((r) => setTimeout(r, ms, 'quiet'))]);
  return got === 'quiet' ? { pending: next } : got;
}

const ev = (type, path, zxid) => ({ type, path, zxid });

test('get sets a one-shot data watch; it fires once, before the write that caused it resolves', async () => {
  await writer.create('/g', '0');
  const w = oneShot();
  await client.get('/g', { watch: w.callback });
  const set = await writer.set('/g', '1');
  assert.deepEqual(await w.fired(), ev('NODE_DATA_CHANGED', '/g', set.zxid));
  await writer.set('/g', '2');
  await client.sync();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(w.calls.length, 1, 'a one-shot watch fired twice');

  // Own write: the event is delivered before the write's promise resolves.
  const own = oneShot();
  await client.get('/g', { watch: own.callback });
  const mine = await client.set('/g', '3');
  assert.equal(own.calls.length, 1);
  assert.deepEqual(own.calls[0], ev('NODE_DATA_CHANGED', '/g', mine.zxid));

  // Re-armed, it reports the deletion.
  const del = oneShot();
  await client.get('/g', { watch: del.callback });
  const deleted = await writer.delete('/g');
  assert.deepEqual(await del.fired(), ev('NODE_DELETED', '/g', deleted.zxid));

  // A get of a missing node fails and sets no watch.
  const none = oneShot();
  await assert.rejects(client.get('/g', { watch: none.callback }), (e) => isConfabError(e, 'NO_NODE'));
  await writer.create('/g');
  await client.sync();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(none.calls.length, 0);
});

test('exists sets a data watch on a missing node: NODE_CREATED', async () => {
  const w = oneShot();
  assert.equal(await client.exists('/e', { watch: w.callback }), null);
  const created = await writer.create('/e');
  assert.deepEqual(await w.fired(), ev('NODE_CREATED', '/e', created.zxid));
  const w2 = oneShot();
  assert.notEqual(await client.exists('/e', { watch: w2.callback }), null);
  const set = await writer.set('/e', 'x');
  assert.deepEqual(await w2.fired(), ev('NODE_DATA_CHANGED', '/e', set.zxid));
});

test('getChildren sets a one-shot child watch', async () => {
  await writer.create('/c');
  const w = oneShot();
  await client.getChildren('/c', { watch: w.callback });
  await writer.set('/c', 'data changes do not fire a child watch');
  const child = await writer.create('/c/x');
  assert.deepEqual(await w.fired(), ev('NODE_CHILDREN_CHANGED', '/c', child.zxid));
  assert.equal(w.calls.length, 1);

  const gone = oneShot();
  await client.getChildren('/c', { watch: gone.callback });
  await writer.delete('/c/x');
  assert.equal((await gone.fired()).type, 'NODE_CHILDREN_CHANGED');
  const last = oneShot();
  await client.getChildren('/c', { watch: last.callback });
  const deleted = await writer.delete('/c');
  assert.deepEqual(await last.fired(), ev('NODE_DELETED', '/c', deleted.zxid));
  await assert.rejects(client.get('/c', { watch: 'yes' }), TypeError);
});

test('a persistent watch reports data and child events of its node until closed', async () => {
  await writer.create('/pw');
  const watch = client.watch('/pw');
  const { zxid: addedAt } = await watch.ready;
  assert.equal(typeof addedAt, 'bigint');
  const set1 = await writer.set('/pw', '1');
  const child = await writer.create('/pw/c');
  await writer.set('/pw/c', 'a child: not this watch');
  await writer.create('/pw/c/d'); // a grandchild: not this watch
  const childGone = await writer.delete('/pw/c/d').then(() => writer.delete('/pw/c'));
  const deleted = await writer.delete('/pw');
  const recreated = await writer.create('/pw');
  assert.deepEqual(await take(watch, 5), [
    ev('NODE_DATA_CHANGED', '/pw', set1.zxid),
    ev('NODE_CHILDREN_CHANGED', '/pw', child.zxid),
    ev('NODE_CHILDREN_CHANGED', '/pw', childGone.zxid),
    ev('NODE_DELETED', '/pw', deleted.zxid),
    ev('NODE_CREATED', '/pw', recreated.zxid),
  ]);
  await watch.close();
  assert.deepEqual(await watch.next(), { value: undefined, done: true });
});

test('for await over a recursive watch: the subtree, in order, multi events included', async () => {
  await writer.create('/superset');
  await writer.create('/superset/config', '{}');
  const watch = client.watch('/superset/config', { recursive: true });
  await watch.ready;
  const expected = [];
  const a = await writer.create('/superset/config/a');
  expected.push(ev('NODE_CREATED', '/superset/config/a', a.zxid));
  const ab = await writer.create('/superset/config/a/b', 'b');
  expected.push(ev('NODE_CREATED', '/superset/config/a/b', ab.zxid));
  const setAb = await writer.set('/superset/config/a/b', 'b2');
  expected.push(ev('NODE_DATA_CHANGED', '/superset/config/a/b', setAb.zxid));
  const setRoot = await writer.set('/superset/config', '{"x":1}');
  expected.push(ev('NODE_DATA_CHANGED', '/superset/config', setRoot.zxid));
  await writer.create('/superset/configx'); // shares the prefix: not in the subtree
  await writer.set('/superset', 'parent: not watched');
  const m = await writer.multi([Op.create('/superset/config/m1'), Op.create('/superset/config/m2'), Op.delete('/superset/config/a/b')]);
  expected.push(ev('NODE_CREATED', '/superset/config/m1', m.zxid));
  expected.push(ev('NODE_CREATED', '/superset/config/m2', m.zxid));
  expected.push(ev('NODE_DELETED', '/superset/config/a/b', m.zxid));

  const got = [];
  for await (const event of watch) {
    got.push(event);
    if (got.length === expected.length) break; // break removes the watch
  }
  assert.deepEqual(got, expected);
  // The loop's break closed the watch: nothing more, and the iterator is done.
  await writer.set('/superset/config', 'after');
  assert.deepEqual(await watch.next(), { value: undefined, done: true });
});

test('two watches on one path: closing one keeps the other', async () => {
  await writer.create('/two');
  const w1 = client.watch('/two');
  const w2 = client.watch('/two');
  await Promise.all([w1.ready, w2.ready]);
  const s1 = await writer.set('/two', '1');
  assert.deepEqual(await take(w1, 1), [ev('NODE_DATA_CHANGED', '/two', s1.zxid)]);
  assert.deepEqual(await take(w2, 1), [ev('NODE_DATA_CHANGED', '/two', s1.zxid)]);
  await w1.close();
  const s2 = await writer.set('/two', '2');
  assert.deepEqual(await take(w2, 1), [ev('NODE_DATA_CHANGED', '/two', s2.zxid)]);
  await w2.close();
});

test('watch from a zxid replays what changed since, then goes on live', async () => {
  const base = await writer.create('/since', '0');
  const s1 = await writer.set('/since', '1');
  const c1 = await writer.create('/since/k');
  const watch = client.watch('/since', { startZxid: base.zxid });
  await watch.ready;
  const s2 = await writer.set('/since', '2');
  assert.deepEqual(await take(watch, 3), [
    ev('NODE_DATA_CHANGED', '/since', s1.zxid),
    ev('NODE_CHILDREN_CHANGED', '/since', c1.zxid),
    ev('NODE_DATA_CHANGED', '/since', s2.zxid),
  ]);
  const q = await quiet(watch);
  assert.ok(q.pending, 'an event came twice');
  await watch.close();
  assert.deepEqual(await q.pending, { value: undefined, done: true });
});

test('a watch on a bad path fails: ready rejects and the iterator throws', async () => {
  const watch = client.watch('no-slash');
  await assert.rejects(watch.ready, (e) => isConfabError(e, 'INVALID_PATH'));
  await assert.rejects(watch.next(), (e) => isConfabError(e, 'INVALID_PATH'));
  assert.deepEqual(await watch.next(), { value: undefined, done: true });
});

test('closing the client ends its watches', async () => {
  const c = await Client.connect({ endpoints: server.endpoint });
  await writer.create('/end');
  const watch = c.watch('/end', { recursive: true });
  await watch.ready;
  const pending = watch.next();
  await c.close();
  assert.deepEqual(await withTimeout(pending, 2000, 'the end of the iterator'), { value: undefined, done: true });
  await assert.rejects(c.get('/end'), (e) => isConfabError(e, 'CLOSED'));
  const late = c.watch('/end');
  await assert.rejects(late.ready, (e) => isConfabError(e, 'CLOSED'));
  await assert.rejects(late.next(), (e) => isConfabError(e, 'CLOSED'));
});
