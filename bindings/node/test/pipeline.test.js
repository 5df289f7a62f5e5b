'use strict';

// Many requests in flight on the one Session stream, answered in request order.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client, isConfabError } = require('..');
const { startConfabd } = require('../testing/confabd');

let server;
let client;

before(async () => {
  server = await startConfabd();
  client = await Client.connect({ endpoints: server.endpoint });
});

after(async () => {
  if (client) await client.close();
  if (server) await server.destroy();
});

test('1,000 concurrent sets on the one stream: every one answered, each with its own result', async () => {
  const N = 1000;
  await client.create('/p');
  await Promise.all(Array.from({ length: N }, (_, i) => client.create(`/p/n${i}`, '')));
  const started = Date.now();
  const sets = [];
  for (let i = 0; i < N; i++) sets.push(client.set(`/p/n${i}`, 'x'.repeat(i % 50) + String(i)));
  const results = await Promise.all(sets);
  const elapsed = Date.now() - started;
  // Each response is the answer to its own request: its node's new size and version, and a zxid
  // of its own that the node's stat shows.
  const zxids = new Set();
  results.forEach((r, i) => {
    assert.equal(r.stat.version, 1, `set ${i}`);
    assert.equal(r.stat.dataLength, (i % 50) + String(i).length, `set ${i}`);
    assert.equal(r.stat.mzxid, r.zxid);
    zxids.add(r.zxid);
  });
  assert.equal(zxids.size, N);
  const reads = await Promise.all(Array.from({ length: N }, (_, i) => client.get(`/p/n${i}`)));
  reads.forEach((g, i) => {
    assert.equal(g.data.toString(), 'x'.repeat(i % 50) + String(i));
    assert.equal(g.stat.mzxid, results[i].zxid);
  });
  // Pipelined, not one round trip (and one fsync) each.
  assert.ok(elapsed < 10000, `1,000 pipelined sets took ${elapsed} ms`);
});

test('pipelined reads see exactly the writes issued before them', async () => {
  await client.create('/rw', '0');
  const ops = [];
  for (let i = 1; i <= 200; i++) {
    ops.push(client.set('/rw', String(i)));
    ops.push(client.get('/rw'));
  }
  const out = await Promise.all(ops);
  for (let i = 1; i <= 200; i++) {
    const got = out[2 * i - 1];
    assert.equal(got.data.toString(), String(i));
    assert.equal(got.stat.version, i);
  }
});

test('errors in a pipeline fail only their own request', async () => {
  await client.create('/mixed');
  const ops = [
    client.create('/mixed/a'),
    client.get('/mixed/none'), // NO_NODE
    client.create('/mixed/a'), // NODE_EXISTS
    client.exists('/mixed/a'),
    client.set('/mixed/a', 'x', 5), // BAD_VERSION
    client.get('/mixed/a'),
    client.set('/mixed/a', 'y', 0),
    client.getChildren('/mixed'),
  ];
  const settled = await Promise.allSettled(ops);
  assert.equal(settled[0].status, 'fulfilled');
  assert.ok(isConfabError(settled[1].reason, 'NO_NODE'));
  assert.ok(isConfabError(settled[2].reason, 'NODE_EXISTS'));
  assert.equal(settled[3].value.version, 0);
  assert.ok(isConfabError(settled[4].reason, 'BAD_VERSION'));
  assert.equal(settled[5].value.stat.version, 0);
  assert.equal(settled[6].value.stat.version, 1);
  assert.deepEqual(settled[7].value.children, ['a']);
});

test('large pipelined writes are split into several stream messages', async () => {
  await client.create('/big');
  const blob = Buffer.alloc(300 * 1024, 0x61); // 30 x 300 KiB: about 9 MiB in flight at once
  const creates = [];
  for (let i = 0; i < 30; i++) creates.push(client.create(`/big/n${String(i).padStart(2, '0')}`, blob));
  await Promise.all(creates);
  const kids = await client.getChildren('/big');
  assert.equal(kids.children.length, 30);
  const reads = await Promise.all(kids.children.map((c) => client.get(`/big/${c}`)));
  for (const r of reads) assert.ok(r.data.equals(blob));
});
