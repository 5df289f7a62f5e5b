'use strict';

// CRUD, error codes, multi and 64-bit ids against a real confabd.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const {
  Client,
  Op,
  CreateMode,
  ConfabError,
  NoNodeError,
  NodeExistsError,
  BadVersionError,
  NotEmptyError,
  NoChildrenForEphemeralsError,
  InvalidPathError,
  TooLargeError,
  SessionExpiredError,
  isConfabError,
} = require('..');
const { startConfabd } = require('../testing/confabd');

let server;
let client;

before(async () => {
  server = await startConfabd(['--max-data-bytes=1024']);
  client = await Client.connect({ endpoints: server.endpoint, sessionTimeoutMs: 10000 });
});

after(async () => {
  if (client) await client.close();
  if (server) await server.destroy();
});

async function rejectsWith(promise, cls, code, path) {
  const err = await promise.then(
    () => assert.fail(`expected ${code}`),
    (e) => e,
  );
  assert.ok(err instanceof ConfabError, `not a ConfabError: ${err}`);
  assert.ok(err instanceof cls, `${err.name} is not a ${cls.name}`);
  assert.equal(err.code, code);
  assert.ok(isConfabError(err, code));
  if (path !== undefined) assert.equal(err.path, path);
  assert.ok(err.message.length > 0);
  return err;
}

test('create, get, set, exists, getChildren, delete', async () => {
  const created = await client.create('/crud', 'v0');
  assert.equal(created.path, '/crud');
  assert.equal(typeof created.zxid, 'bigint');
  assert.equal(created.stat.version, 0);
  assert.equal(created.stat.czxid, created.zxid);

  const got = await client.get('/crud');
  assert.ok(Buffer.isBuffer(got.data));
  assert.equal(got.data.toString(), 'v0');
  assert.equal(got.stat.dataLength, 2);
  assert.ok(got.zxid >= created.zxid);

  const set1 = await client.set('/crud', Buffer.from([0, 1, 2, 255]));
  assert.equal(set1.stat.version, 1);
  assert.ok(set1.zxid > created.zxid);
  assert.deepEqual([...(await client.get('/crud')).data], [0, 1, 2, 255]);
  const set2 = await client.set('/crud', new Uint8Array([7]), 1);
  assert.equal(set2.stat.version, 2);
  assert.equal(set2.stat.mzxid, set2.zxid);

  const stat = await client.exists('/crud');
  assert.equal(stat.version, 2);
  assert.equal(await client.exists('/crud/missing'), null);

  await client.create('/crud/b');
  await client.create('/crud/a', null);
  const kids = await client.getChildren('/crud');
  assert.deepEqual(kids.children, ['a', 'b']);
  assert.equal(kids.stat.numChildren, 2);

  const empty = await client.get('/crud/a');
  assert.equal(empty.data.length, 0);

  await client.delete('/crud/a');
  await client.delete('/crud/b', 0);
  const del = await client.delete('/crud', 2);
  assert.equal(typeof del.zxid, 'bigint');
  assert.equal(await client.exists('/crud'), null);
});

test('sequential and ephemeral modes', async () => {
  await client.create('/seq');
  const a = await client.create('/seq/n-', '', CreateMode.PERSISTENT_SEQUENTIAL);
  const b = await client.create('/seq/n-', '', { mode: 'PERSISTENT_SEQUENTIAL' });
  assert.equal(a.path, '/seq/n-0000000000');
  assert.equal(b.path, '/seq/n-0000000001');
  const e = await client.create('/seq/e', 'x', { mode: CreateMode.EPHEMERAL });
  assert.equal(e.stat.ephemeralOwner, client.sessionId);
  const es = await client.create('/seq/e-', 'x', 'EPHEMERAL_SEQUENTIAL');
  assert.equal(es.path, '/seq/e-0000000003');
  assert.equal(es.stat.ephemeralOwner, client.sessionId);
  await assert.rejects(client.create('/seq/x', '', { mode: 'NOPE' }), TypeError);
});

test('error codes name the problem and the path', async () => {
  await client.create('/err', 'p');
  await client.create('/err/c');
  await client.create('/err/eph', '', CreateMode.EPHEMERAL);
  await rejectsWith(client.get('/err/missing'), NoNodeError, 'NO_NODE', '/err/missing');
  await rejectsWith(client.create('/err'), NodeExistsError, 'NODE_EXISTS', '/err');
  await rejectsWith(client.create('/err/missing/child'), NoNodeError, 'NO_NODE');
  await rejectsWith(client.set('/err', 'x', 7), BadVersionError, 'BAD_VERSION', '/err');
  await rejectsWith(client.delete('/err', 3), BadVersionError, 'BAD_VERSION', '/err');
  await rejectsWith(client.delete('/err'), NotEmptyError, 'NOT_EMPTY', '/err');
  await rejectsWith(client.create('/err/eph/x'), NoChildrenForEphemeralsError, 'NO_CHILDREN_FOR_EPHEMERALS');
  const invalid = await rejectsWith(client.get('no/slash'), InvalidPathError, 'INVALID_PATH');
  assert.match(invalid.message, /no\/slash/);
  await rejectsWith(client.create('/err/big', Buffer.alloc(4096)), TooLargeError, 'TOO_LARGE');
  await rejectsWith(client.getChildren('/err/missing'), NoNodeError, 'NO_NODE');
  await assert.rejects(client.get(42), TypeError);
  // The session goes on after errors.
  assert.equal((await client.get('/err')).data.toString(), 'p');
});

test('multi: all or nothing, results per op, failedOp on failure', async () => {
  await client.create('/multi', 'm0');
  const ok = await client.multi([
    Op.create('/multi/a', 'a'),
    Op.create('/multi/s-', '', CreateMode.PERSISTENT_SEQUENTIAL),
    Op.set('/multi', 'm1', 0),
    Op.check('/multi', 1),
    Op.delete('/multi/a'),
  ]);
  assert.deepEqual(
    ok.results.map((r) => r.type),
    ['create', 'create', 'set', 'check', 'delete'],
  );
  assert.equal(ok.results[0].path, '/multi/a');
  assert.equal(ok.results[1].path, '/multi/s-0000000001');
  assert.equal(ok.results[2].stat.version, 1);
  for (const r of ok.results) if (r.zxid !== undefined) assert.equal(r.zxid, ok.zxid);
  assert.equal((await client.get('/multi')).stat.mzxid, ok.zxid);

  const err = await rejectsWith(
    client.multi([Op.create('/multi/n'), Op.set('/multi', 'x'), Op.check('/multi', 9)]),
    BadVersionError,
    'BAD_VERSION',
  );
  assert.equal(err.failedOp, 2);
  assert.deepEqual(
    err.results.map((r) => r.code),
    ['RUNTIME_INCONSISTENCY', 'RUNTIME_INCONSISTENCY', 'BAD_VERSION'],
  );
  assert.equal(await client.exists('/multi/n'), null);
  assert.equal((await client.get('/multi')).data.toString(), 'm1');

  const refused = await rejectsWith(client.multi([Op.create('/multi/ok'), Op.create('/multi/bad/')]), InvalidPathError, 'INVALID_PATH');
  assert.equal(refused.failedOp, 1);
  assert.throws(() => Op.check('/multi'), TypeError);
});

test('sync returns a zxid at or after the last write', async () => {
  const w = await client.create('/sync');
  const z = await client.sync('/sync');
  assert.equal(typeof z, 'bigint');
  assert.ok(z >= w.zxid);
  assert.ok((await client.sync()) >= z);
});

test('64-bit session ids and zxids round-trip exactly', async () => {
  const id = client.sessionId;
  assert.equal(typeof id, 'bigint');
  // Session ids carry the start time in their high bits: well past 2^53, where a JS number
  // would round them.
  assert.ok(id > 2n ** 53n, `session id ${id} is not past 2^53`);
  assert.notEqual(BigInt(Number(id)), id);
  const e = await client.create('/owned', '', CreateMode.EPHEMERAL);
  assert.equal(e.stat.ephemeralOwner, id);
  assert.equal((await client.exists('/owned')).ephemeralOwner, id);
  // zxids are epoch << 32 | counter.
  assert.ok(e.zxid > 2n ** 32n);

  // A second client resuming a session by its id (here as a decimal string) finds the same
  // session: the id went out and came back intact.
  const a = await Client.connect({ endpoints: server.endpoint });
  const states = [];
  a.on('state', (s) => states.push(s));
  await a.create('/owned-a', '', CreateMode.EPHEMERAL);
  const b = await Client.connect({ endpoints: server.endpoint, sessionId: a.sessionId.toString() });
  assert.equal(b.sessionId, a.sessionId);
  assert.equal((await b.exists('/owned-a')).ephemeralOwner, a.sessionId);
  const mine = await b.create('/owned-b', '', CreateMode.EPHEMERAL);
  assert.equal(mine.stat.ephemeralOwner, a.sessionId);
  // Closed from b, the session is gone for a too: SESSION_EXPIRED, then LOST.
  await b.close();
  assert.equal(await client.exists('/owned-a'), null);
  assert.equal(await client.exists('/owned-b'), null);
  await rejectsWith(a.get('/'), SessionExpiredError, 'SESSION_EXPIRED');
  assert.deepEqual(states, ['LOST']);
  assert.equal(a.state, 'LOST');
  await rejectsWith(a.get('/'), SessionExpiredError, 'SESSION_EXPIRED');
  await a.close(); // no-op once lost
  // An unknown id (also past 2^53) is refused.
  await assert.rejects(
    Client.connect({ endpoints: server.endpoint, sessionId: 0x0123456789abcdefn, connectTimeoutMs: 3000 }),
    (err) => err instanceof SessionExpiredError && err.code === 'SESSION_EXPIRED',
  );
});
