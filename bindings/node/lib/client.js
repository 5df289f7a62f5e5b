'use strict';

// The Confab client: one Session stream per client carries every operation (pipelined, answered
// in request order), heartbeats and watch events. On stream loss it resumes the session on the
// next endpoint and re-adds its watches from the last zxid it saw, so that no event is missed or
// delivered twice.

const { EventEmitter } = require('node:events');
const grpc = require('@grpc/grpc-js');
const { load } = require('./proto');
const { makeError, fromProtoError } = require('./errors');
const { Watcher, WatchStream, matches } = require('./watch');

const State = Object.freeze({
  CONNECTED: 'CONNECTED',
  SUSPENDED: 'SUSPENDED',
  RECONNECTED: 'RECONNECTED',
  LOST: 'LOST',
  CLOSED: 'CLOSED',
});

const CreateMode = Object.freeze({
  PERSISTENT: 'PERSISTENT',
  EPHEMERAL: 'EPHEMERAL',
  PERSISTENT_SEQUENTIAL: 'PERSISTENT_SEQUENTIAL',
  EPHEMERAL_SEQUENTIAL: 'EPHEMERAL_SEQUENTIAL',
});

const EventType = Object.freeze({
  NODE_CREATED: 'NODE_CREATED',
  NODE_DELETED: 'NODE_DELETED',
  NODE_DATA_CHANGED: 'NODE_DATA_CHANGED',
  NODE_CHILDREN_CHANGED: 'NODE_CHILDREN_CHANGED',
  WATCHES_LOST: 'WATCHES_LOST',
});

// One ClientMessage carries at most this much (the server takes up to --max-txn-bytes + 1 MiB).
const BATCH_BYTES_MAX = 1 << 20;
const BATCH_REQUESTS_MAX = 1000;

// Requests that may be sent again on a new stream when the old one broke before answering.
// Writes are not: they may have been applied, so they fail with CONNECTION_LOSS.
const RETRYABLE = new Set(['get', 'exists', 'getChildren', 'sync']);

const DEFAULTS = {
  sessionTimeoutMs: 10000,
  connectTimeoutMs: 10000,
  connectAttemptTimeoutMs: 5000,
  reconnectDelayMs: 100,
  maxReconnectDelayMs: 2000,
};

// ---- conversions ----------------------------------------------------------------------------

function big(v) {
  if (v === null || v === undefined || v === '') return 0n;
  return BigInt(v);
}

function int64(v, what) {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return v;
  throw new TypeError(`${what} must be a bigint, a safe integer or a decimal string`);
}

function statOf(s) {
  if (!s) return null;
  return {
    czxid: big(s.czxid),
    mzxid: big(s.mzxid),
    pzxid: big(s.pzxid),
    ctime: Number(s.ctime),
    mtime: Number(s.mtime),
    version: s.version,
    cversion: s.cversion,
    ephemeralOwner: big(s.ephemeralOwner),
    dataLength: s.dataLength,
    numChildren: s.numChildren,
  };
}

function toBuffer(data) {
  if (data === undefined || data === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('data must be a string, a Buffer or a Uint8Array');
}

function toData(b) {
  return Buffer.isBuffer(b) ? b : Buffer.from(b || []);
}

function checkPath(path) {
  if (typeof path !== 'string') throw new TypeError('path must be a string');
}

function checkVersion(version) {
  if (version === undefined || version === null || version === -1) return undefined;
  if (!Number.isInteger(version) || version < -1 || version > 0x7fffffff) {
    throw new TypeError('version must be an int32 (or -1/undefined for any version)');
  }
  return version;
}

function modeOf(options) {
  const mode = typeof options === 'string' ? options : (options && options.mode) || 'PERSISTENT';
  if (!CreateMode[mode]) throw new TypeError(`unknown create mode ${mode}`);
  return mode;
}

function parseEndpoints(endpoints) {
  const list = Array.isArray(endpoints) ? endpoints : String(endpoints || '').split(',');
  const out = list.map((e) => String(e).trim()).filter(Boolean);
  if (out.length === 0) throw new TypeError('endpoints: at least one host:port is required');
  return out;
}

function responseZxid(r) {
  const body = r[r.response];
  return body && body.zxid !== undefined ? big(body.zxid) : null;
}

// Roughly the encoded size of an outgoing SessionRequest ({ requestId, <kind>: body }).
function requestBytes(request) {
  let body = {};
  for (const key of Object.keys(request)) if (key !== 'requestId') body = request[key] || {};
  let bytes = 32 + (body.path ? body.path.length : 0) + (body.data ? body.data.length : 0);
  if (body.ops) {
    for (const op of body.ops) {
      const o = op.create || op.set || op.delete || op.check || {};
      bytes += 32 + (o.path ? o.path.length : 0) + (o.data ? o.data.length : 0);
    }
  }
  return bytes;
}

// ---- Multi ops ------------------------------------------------------------------------------

/** Builders of Multi operations: client.multi([Op.create(...), Op.set(...), ...]). */
const Op = Object.freeze({
  create(path, data, options) {
    checkPath(path);
    return { create: { path, data: toBuffer(data), mode: modeOf(options) } };
  },
  set(path, data, version) {
    checkPath(path);
    const set = { path, data: toBuffer(data) };
    const v = checkVersion(version);
    if (v !== undefined) set.version = v;
    return { set };
  },
  delete(path, version) {
    checkPath(path);
    const del = { path };
    const v = checkVersion(version);
    if (v !== undefined) del.version = v;
    return { delete: del };
  },
  check(path, version) {
    checkPath(path);
    if (!Number.isInteger(version)) throw new TypeError('check needs a version');
    return { check: { path, version } };
  },
});

function opResultOf(r) {
  const code = (r.error && r.error.code) || 'OK';
  switch (r.result) {
    case 'create':
      return { type: 'create', path: r.create.path, stat: statOf(r.create.stat), zxid: big(r.create.zxid) };
    case 'set':
      return { type: 'set', stat: statOf(r.set.stat), zxid: big(r.set.zxid) };
    case 'delete':
      return { type: 'delete', zxid: big(r.delete.zxid) };
    case 'check':
      return { type: 'check' };
    default:
      return { type: 'error', code, message: (r.error && r.error.message) || '' };
  }
}

// ---- the client -----------------------------------------------------------------------------

class Client extends EventEmitter {
  /**
   * Connects (opening a new session, or resuming `options.sessionId`) and resolves once the
   * session is established.
   */
  static async connect(options) {
    const client = new Client(options);
    await client.connect();
    return client;
  }

  /**
   * Opens (or resumes) the session; resolves once it is established. For a client made with
   * `new Client(options)`, which can take 'state' listeners first. Calling it again returns the
   * same promise.
   */
  connect() {
    if (this._state === State.LOST || this._state === State.CLOSED) return Promise.reject(this._deadError());
    if (!this._connectPromise) this._connectPromise = this._start();
    return this._connectPromise;
  }

  constructor(options = {}) {
    super();
    this._endpoints = parseEndpoints(options.endpoints);
    this._opts = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS)) {
      if (options[k] === undefined) continue;
      if (!Number.isInteger(options[k]) || options[k] < 0 || options[k] > 0x7fffffff) {
        throw new TypeError(`${k} must be a non-negative integer (ms)`);
      }
      this._opts[k] = options[k];
    }
    this._channelOptions = {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.use_local_subchannel_pool': 1,
      'grpc.enable_retries': 0,
      ...(options.grpcOptions || {}),
    };
    this._service = load().Coordination;
    this._state = null; // null (connecting) | CONNECTED | SUSPENDED | RECONNECTED | LOST | CLOSED
    this._sessionId = options.sessionId !== undefined ? big(int64(options.sessionId, 'sessionId')) : 0n;
    this._timeoutMs = 0;
    this._endpointIndex = 0;
    this._failures = 0;
    this._gen = 0; // incremented whenever the current stream is abandoned
    this._link = null; // { call, channel, gen, endpoint, established, writable }
    this._nextRequestId = 1;
    this._inflight = new Map(); // request id (string) -> request, in the order sent
    this._outbox = []; // requests assigned to the current stream, not yet written
    this._queue = []; // requests waiting for a stream (while connecting or suspended)
    this._watchers = new Set();
    this._lastResponseZxid = 0n;
    this._lastEventZxid = 0n;
    this._lastReceivedAt = 0;
    this._heartbeatInFlight = false;
    this._timers = { heartbeat: null, reconnect: null, attempt: null, connect: null };
    this._flushScheduled = false;
    this._closing = false;
    this._closePromise = null;
    this._connectPromise = null;
    this._everConnected = false;
  }

  // ---- public properties ----

  /** The session id (0n before the session is open). */
  get sessionId() {
    return this._sessionId;
  }
  /** The session timeout granted by the server, in ms. */
  get sessionTimeoutMs() {
    return this._timeoutMs;
  }
  /** CONNECTED, SUSPENDED, RECONNECTED, LOST or CLOSED (null while connecting the first time). */
  get state() {
    return this._state;
  }
  /** The highest zxid seen in a response or event. */
  get lastZxid() {
    return this._lastResponseZxid > this._lastEventZxid ? this._lastResponseZxid : this._lastEventZxid;
  }
  /** The endpoint of the current stream (null while disconnected). */
  get endpoint() {
    return this._link && this._link.established ? this._link.endpoint : null;
  }

  // ---- operations ----

  /** Creates a node. mode: PERSISTENT (default), EPHEMERAL, PERSISTENT_SEQUENTIAL, EPHEMERAL_SEQUENTIAL. */
  create(path, data, options) {
    return this._op(() => {
      checkPath(path);
      const body = { path, data: toBuffer(data), mode: modeOf(options) };
      return this._request('create', body, path, (r) => ({
        path: r.create.path,
        stat: statOf(r.create.stat),
        zxid: big(r.create.zxid),
      }));
    });
  }

  /** Reads a node: { data: Buffer, stat, zxid }. options.watch: a one-shot callback(event). */
  get(path, options = {}) {
    return this._op(() => {
      checkPath(path);
      const watch = watchCallback(options);
      const body = { path, watch: !!watch, linearizable: !!options.linearizable };
      return this._request('get', body, path, (r) => {
        const zxid = big(r.get.zxid);
        if (watch) this._addOneShot(path, 'DATA_WATCH', watch, zxid);
        return { data: toData(r.get.data), stat: statOf(r.get.stat), zxid };
      });
    });
  }

  /** Writes a node's data; `version` (optional) is the expected version. Resolves { stat, zxid }. */
  set(path, data, version) {
    return this._op(() => {
      checkPath(path);
      const body = { path, data: toBuffer(data) };
      const v = checkVersion(version);
      if (v !== undefined) body.version = v;
      return this._request('set', body, path, (r) => ({ stat: statOf(r.set.stat), zxid: big(r.set.zxid) }));
    });
  }

  /** Deletes a node; `version` (optional) is the expected version. Resolves { zxid }. */
  delete(path, version) {
    return this._op(() => {
      checkPath(path);
      const body = { path };
      const v = checkVersion(version);
      if (v !== undefined) body.version = v;
      return this._request('delete', body, path, (r) => ({ zxid: big(r.delete.zxid) }));
    });
  }

  /** The node's Stat, or null if it does not exist. options.watch: a one-shot callback(event). */
  exists(path, options = {}) {
    return this._op(() => {
      checkPath(path);
      const watch = watchCallback(options);
      const body = { path, watch: !!watch, linearizable: !!options.linearizable };
      return this._request('exists', body, path, (r) => {
        if (watch) this._addOneShot(path, 'DATA_WATCH', watch, big(r.exists.zxid));
        return r.exists.exists ? statOf(r.exists.stat) : null;
      });
    });
  }

  /** The node's children, sorted: { children, stat, zxid }. options.watch: a one-shot callback. */
  getChildren(path, options = {}) {
    return this._op(() => {
      checkPath(path);
      const watch = watchCallback(options);
      const body = { path, watch: !!watch, linearizable: !!options.linearizable };
      return this._request('getChildren', body, path, (r) => {
        const zxid = big(r.getChildren.zxid);
        if (watch) this._addOneShot(path, 'CHILD_WATCH', watch, zxid);
        return { children: r.getChildren.children, stat: statOf(r.getChildren.stat), zxid };
      });
    });
  }

  /** Atomic multi: all ops apply at one zxid or none does. Resolves { zxid, results }. */
  multi(ops) {
    return this._op(() => {
      if (!Array.isArray(ops)) throw new TypeError('multi takes an array of Op.* operations');
      for (const op of ops) {
        if (!op || !(op.create || op.set || op.delete || op.check)) {
          throw new TypeError('multi takes Op.create/Op.set/Op.delete/Op.check operations');
        }
      }
      return this._request('multi', { ops }, '', (r) => ({
        zxid: big(r.multi.zxid),
        results: r.multi.results.map(opResultOf),
      }));
    });
  }

  /** Resolves the zxid at or after which every write acknowledged before the call is applied. */
  sync(path = '') {
    return this._op(() => {
      checkPath(path);
      return this._request('sync', { path }, path, (r) => big(r.sync.zxid));
    });
  }

  /**
   * A persistent watch on `path` (and its subtree with { recursive: true }) as an async iterator
   * of { type, path, zxid } events. options.startZxid: replay what changed after that zxid first.
   */
  watch(path, options = {}) {
    checkPath(path);
    const recursive = !!options.recursive;
    const stream = new WatchStream(path, recursive);
    const from = options.startZxid !== undefined ? big(int64(options.startZxid, 'startZxid')) : 0n;
    const watcher = new Watcher(this, {
      path,
      kind: recursive ? 'PERSISTENT_RECURSIVE_WATCH' : 'PERSISTENT_WATCH',
      oneShot: false,
      stream,
      from,
    });
    stream._watcher = watcher;
    if (this._state === State.LOST || this._state === State.CLOSED || this._closing) {
      watcher.end(this._deadError());
      return stream;
    }
    this._watchers.add(watcher);
    // With no stream now, the watch is added with the others when the next stream opens.
    if (this._link) this._sendAddWatch(watcher);
    return stream;
  }

  /** Closes the session (its ephemeral nodes go) and releases every resource of the client. */
  close() {
    if (this._closePromise) return this._closePromise;
    this._closePromise = (async () => {
      if (this._state === State.LOST || this._state === State.CLOSED) return;
      this._closing = true;
      if (this._established()) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.max(this._timeoutMs, 1000));
          const done = () => {
            clearTimeout(timer);
            resolve();
          };
          this._send({ kind: 'close', body: {}, path: '', convert: () => null, resolve: done, reject: done });
        });
      }
      this._teardown(State.CLOSED, makeError('CLOSED', 'the client is closed'));
    })();
    return this._closePromise;
  }

  // ---- requests ----

  _op(fn) {
    try {
      return fn();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  _request(kind, body, path, convert) {
    return new Promise((resolve, reject) => {
      this._send({ kind, body, path, convert, resolve, reject });
    });
  }

  _deadError() {
    return this._state === State.LOST
      ? makeError('SESSION_EXPIRED', `session 0x${this._sessionId.toString(16)} is expired or closed`)
      : makeError('CLOSED', 'the client is closed');
  }

  _established() {
    return this._link !== null && this._link.established;
  }

  _send(req) {
    if (this._state === State.LOST || this._state === State.CLOSED) {
      req.reject(this._deadError());
      return;
    }
    if (this._established()) {
      this._assign(req);
      return;
    }
    // No session stream right now: wait for one, at most a session timeout.
    this._queue.push(req);
    if (this._everConnected && req.kind !== 'close') {
      req.timer = setTimeout(() => {
        const i = this._queue.indexOf(req);
        if (i < 0) return;
        this._queue.splice(i, 1);
        req.reject(makeError('CONNECTION_LOSS', `no Confab server reachable for ${req.kind} ${req.path}`, { path: req.path }));
      }, this._timeoutMs || this._opts.sessionTimeoutMs);
      req.timer.unref();
    }
  }

  // Puts `req` on the current stream.
  _assign(req) {
    if (req.timer) {
      clearTimeout(req.timer);
      req.timer = null;
    }
    const id = String(this._nextRequestId++);
    req.id = id;
    this._inflight.set(id, req);
    this._outbox.push({ requestId: id, [req.kind]: req.body });
    if (!this._flushScheduled) {
      this._flushScheduled = true;
      process.nextTick(() => this._flush());
    }
  }

  _flush() {
    this._flushScheduled = false;
    const link = this._link;
    if (!link || !link.writable) return;
    while (this._outbox.length > 0) {
      const requests = [];
      let bytes = 0;
      while (this._outbox.length > 0 && requests.length < BATCH_REQUESTS_MAX) {
        const size = requestBytes(this._outbox[0]);
        if (requests.length > 0 && bytes + size > BATCH_BYTES_MAX) break;
        requests.push(this._outbox.shift());
        bytes += size;
      }
      let ok;
      try {
        ok = link.call.write({ requests });
      } catch (err) {
        this._linkFailed(link.gen, err);
        return;
      }
      if (!ok) {
        link.writable = false;
        link.call.once('drain', () => {
          if (this._link !== link) return;
          link.writable = true;
          this._flush();
        });
        return;
      }
    }
  }

  _sendAddWatch(watcher) {
    const body = { path: watcher.path, kind: watcher.kind, startZxid: watcher.from.toString() };
    this._assign({
      kind: 'addWatch',
      body,
      path: watcher.path,
      watcher,
      convert: null,
      resolve: () => {},
      reject: () => {},
    });
  }

  _addOneShot(path, kind, callback, zxid) {
    const watcher = new Watcher(this, { path, kind, oneShot: true, callback });
    this._watchers.add(watcher);
    watcher.activate(zxid, false);
  }

  _dropWatcher(watcher) {
    watcher.state = 'closed';
    this._watchers.delete(watcher);
  }

  _hasWatch(path, kind) {
    for (const w of this._watchers) {
      if (w.path === path && w.kind === kind && w.state !== 'closed') return true;
    }
    return false;
  }

  // The application closed a persistent watch: remove it from the server unless another watch of
  // this client still needs the same registration.
  _closeWatcher(watcher) {
    const wasActive = watcher.state === 'active';
    if (watcher.state !== 'closed') {
      this._dropWatcher(watcher);
      watcher.end(null);
    }
    if (!wasActive || !this._established() || this._hasWatch(watcher.path, watcher.kind)) {
      return Promise.resolve();
    }
    return this._removeWatch(watcher.path, watcher.kind);
  }

  _removeWatch(path, kind) {
    return new Promise((resolve) => {
      this._assign({ kind: 'removeWatch', body: { path, kind }, path, convert: () => null, resolve, reject: () => resolve() });
    });
  }

  // ---- the stream ----

  _start() {
    return new Promise((resolve, reject) => {
      this._startPromise = { resolve, reject };
      this._timers.connect = setTimeout(() => {
        this._timers.connect = null;
        const err = makeError(
          'CONNECTION_LOSS',
          `could not open a Confab session on ${this._endpoints.join(',')} within ${this._opts.connectTimeoutMs} ms` +
            (this._lastFailure ? `: ${this._lastFailure.message}` : ''),
          { cause: this._lastFailure },
        );
        this._teardown(State.CLOSED, err, /*emit=*/ false);
        reject(err);
      }, this._opts.connectTimeoutMs);
      this._attempt();
    });
  }

  _attempt() {
    this._timers.reconnect = null;
    const endpoint = this._endpoints[this._endpointIndex % this._endpoints.length];
    let channel;
    let call;
    try {
      channel = new this._service(endpoint, grpc.credentials.createInsecure(), this._channelOptions);
      call = channel.Session();
    } catch (err) {
      // A malformed endpoint: try the next one.
      if (channel) channel.close();
      this._lastFailure = err;
      this._scheduleReconnect();
      return;
    }
    const gen = ++this._gen;
    const link = { call, channel, gen, endpoint, established: false, writable: true };
    this._link = link;
    call.on('data', (message) => {
      if (this._gen !== gen) return;
      this._lastReceivedAt = Date.now();
      for (const response of message.responses) {
        if (this._gen !== gen) return;
        this._onResponse(response);
      }
    });
    call.on('error', (err) => this._linkFailed(gen, err));
    call.on('end', () => this._linkFailed(gen, new Error(`stream to ${endpoint} ended`)));
    call.on('status', () => {});

    this._timers.attempt = setTimeout(() => {
      this._timers.attempt = null;
      this._linkFailed(gen, new Error(`no answer to OpenSession from ${endpoint} within ${this._opts.connectAttemptTimeoutMs} ms`));
    }, this._opts.connectAttemptTimeoutMs);

    // OpenSession, then the watches again (from the last zxid seen), all in one message.
    this._assign({
      kind: 'open',
      body: { timeoutMs: this._opts.sessionTimeoutMs, sessionId: this._sessionId.toString() },
      path: '',
      convert: null,
      resolve: () => {},
      reject: () => {},
    });
    const complete = this._completeZxid();
    for (const w of this._watchers) {
      if (w.state === 'closed') continue;
      if (w.state === 'active') w.from = complete;
      w.state = 'pending';
      w.buffer = [];
      this._sendAddWatch(w);
    }
  }

  // Every event with a zxid at or below this one has been received: responses come after the
  // events of every change they reflect; after an event, others of the same zxid may still come.
  _completeZxid() {
    const afterEvents = this._lastEventZxid > 0n ? this._lastEventZxid - 1n : 0n;
    return this._lastResponseZxid > afterEvents ? this._lastResponseZxid : afterEvents;
  }

  _onResponse(r) {
    if (r.requestId === '0') {
      if (r.response === 'event') {
        this._onEvent(r.event);
      } else {
        const err = fromProtoError(r.error);
        // The session-closed notice: expected when closing, else the session is gone.
        if (err && !this._closing) this._lose(err);
      }
      return;
    }
    const req = this._inflight.get(r.requestId);
    if (!req) return;
    this._inflight.delete(r.requestId);
    const err = fromProtoError(r.error, { path: (r.error && r.error.path) || req.path });
    // (Not the zxids of OpenSession and heartbeats: they tell what the server applied, not what
    // this stream has been sent events for.)
    if (!err && req.kind !== 'open' && req.kind !== 'heartbeat') {
      const zxid = responseZxid(r);
      if (zxid !== null && zxid > this._lastResponseZxid) this._lastResponseZxid = zxid;
    }
    switch (req.kind) {
      case 'open':
        this._onOpened(r, err);
        return;
      case 'heartbeat':
        this._heartbeatInFlight = false;
        break;
      case 'addWatch':
        this._onWatchAdded(req.watcher, r, err);
        break;
      default:
        break;
    }
    if (err) {
      if (req.kind === 'multi' && r.multi) err.results = r.multi.results.map(opResultOf);
      req.reject(err);
      if (err.code === 'SESSION_EXPIRED' && !this._closing) this._lose(err);
      return;
    }
    let value;
    try {
      value = req.convert ? req.convert(r) : undefined;
    } catch (e) {
      req.reject(e);
      return;
    }
    req.resolve(value);
  }

  _onOpened(r, err) {
    const link = this._link;
    if (err) {
      if (err.code === 'SESSION_EXPIRED') {
        if (!this._everConnected) {
          this._teardown(State.CLOSED, err, false);
          this._settleStart(err);
        } else {
          this._lose(err);
        }
        return;
      }
      this._linkFailed(link.gen, err);
      return;
    }
    clearTimeout(this._timers.attempt);
    this._timers.attempt = null;
    link.established = true;
    this._failures = 0;
    this._sessionId = big(r.opened.sessionId);
    this._timeoutMs = r.opened.timeoutMs;
    this._lastReceivedAt = Date.now();
    this._startHeartbeats();
    const first = !this._everConnected;
    this._everConnected = true;
    // What waited for a stream goes now, in order, behind the watches being re-added.
    const queued = this._queue;
    this._queue = [];
    for (const req of queued) this._assign(req);
    this._setState(first ? State.CONNECTED : State.RECONNECTED);
    if (first) this._settleStart(null);
  }

  _settleStart(err) {
    if (!this._startPromise) return;
    const { resolve, reject } = this._startPromise;
    this._startPromise = null;
    clearTimeout(this._timers.connect);
    this._timers.connect = null;
    if (err) reject(err);
    else resolve();
  }

  _onWatchAdded(watcher, r, err) {
    if (err) {
      if (watcher.state !== 'closed') {
        this._dropWatcher(watcher);
        watcher.end(err);
      }
      return;
    }
    if (watcher.state === 'closed') {
      // Closed by the application while being added: take it off the server again.
      if (!watcher.oneShot && !this._hasWatch(watcher.path, watcher.kind)) {
        this._removeWatch(watcher.path, watcher.kind);
      }
      return;
    }
    watcher.activate(big(r.addWatch.zxid), !!r.addWatch.eventsMissed);
  }

  _onEvent(e) {
    const event = Object.freeze({ type: e.type, path: e.path, zxid: big(e.zxid) });
    if (event.type === 'WATCHES_LOST') {
      // The server dropped this session's watches: every watch is told; persistent ones are
      // added again from now on (the application re-reads what they cover).
      for (const w of [...this._watchers]) {
        if (w.state === 'closed') continue;
        w.deliver(Object.freeze({ type: 'WATCHES_LOST', path: w.path, zxid: event.zxid }));
        if (!w.oneShot && w.state !== 'closed' && this._established()) {
          w.state = 'pending';
          w.from = 0n;
          w.buffer = [];
          this._sendAddWatch(w);
        }
      }
      return;
    }
    if (event.zxid > this._lastEventZxid) this._lastEventZxid = event.zxid;
    for (const w of [...this._watchers]) {
      if (w.state === 'closed' || !matches(w.kind, w.path, event)) continue;
      if (w.state === 'pending') {
        if (w.from !== 0n) w.buffer.push(event);
      } else {
        w.offer(event);
      }
    }
  }

  // The current stream is gone (error, end, timeout): fail or keep its requests, then reconnect.
  _linkFailed(gen, err) {
    if (gen !== this._gen || !this._link) return;
    const link = this._link;
    const wasEstablished = link.established;
    this._lastFailure = err;
    this._dropLink();
    clearTimeout(this._timers.attempt);
    this._timers.attempt = null;

    const retry = [];
    for (const req of this._inflight.values()) {
      switch (req.kind) {
        case 'open':
        case 'heartbeat':
        case 'addWatch': // the watch itself is added again on the next stream
          break;
        case 'removeWatch': // a new stream has none of the old stream's watches
          req.resolve();
          break;
        default:
          if (RETRYABLE.has(req.kind) || (req.kind === 'close' && this._closing)) {
            retry.push(req);
          } else {
            req.reject(
              makeError('CONNECTION_LOSS', `connection to ${link.endpoint} lost with ${req.kind} ${req.path} in flight (it may or may not have been applied)`, {
                path: req.path,
                cause: err,
              }),
            );
          }
      }
    }
    this._inflight.clear();
    this._outbox = [];
    this._heartbeatInFlight = false;
    this._queue = [...retry, ...this._queue];

    if (this._closing) {
      this._teardown(State.CLOSED, makeError('CLOSED', 'the client is closed'));
      return;
    }
    if (wasEstablished) {
      this._stopHeartbeats();
      this._setState(State.SUSPENDED);
      // Requests that now wait for the next stream fail if it does not come within the timeout.
      for (const req of this._queue) {
        if (!req.timer && req.kind !== 'close') {
          req.timer = setTimeout(() => {
            const i = this._queue.indexOf(req);
            if (i < 0) return;
            this._queue.splice(i, 1);
            req.reject(makeError('CONNECTION_LOSS', `no Confab server reachable for ${req.kind} ${req.path}`, { path: req.path }));
          }, this._timeoutMs);
          req.timer.unref();
        }
      }
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    this._endpointIndex = (this._endpointIndex + 1) % this._endpoints.length;
    this._failures++;
    const n = this._endpoints.length;
    let delay = 0;
    // Each endpoint once at once; then back off.
    if (n === 1 || this._failures >= n) {
      const rounds = n === 1 ? this._failures : this._failures - n + 1;
      delay = Math.min(this._opts.maxReconnectDelayMs, this._opts.reconnectDelayMs * 2 ** Math.min(rounds - 1, 16));
      delay = Math.round(delay * (0.8 + 0.4 * Math.random()));
    }
    this._timers.reconnect = setTimeout(() => this._attempt(), delay);
  }

  _dropLink() {
    const link = this._link;
    if (!link) return;
    this._link = null;
    this._gen++;
    try {
      link.call.cancel();
    } catch {
      // already done
    }
    link.channel.close();
  }

  _startHeartbeats() {
    this._stopHeartbeats();
    const interval = Math.max(50, Math.floor(this._timeoutMs / 3));
    this._timers.heartbeat = setInterval(() => this._heartbeat(), interval);
    this._timers.heartbeat.unref();
  }

  _stopHeartbeats() {
    clearInterval(this._timers.heartbeat);
    this._timers.heartbeat = null;
  }

  _heartbeat() {
    const link = this._link;
    if (!link || !link.established) return;
    // A stream that answers nothing for 2/3 of the session timeout is dead: move on before the
    // session expires.
    if (this._inflight.size > 0 && Date.now() - this._lastReceivedAt > (this._timeoutMs * 2) / 3) {
      this._linkFailed(link.gen, new Error(`no answer from ${link.endpoint} for ${Date.now() - this._lastReceivedAt} ms`));
      return;
    }
    if (this._heartbeatInFlight) return;
    this._heartbeatInFlight = true;
    this._assign({ kind: 'heartbeat', body: {}, path: '', convert: null, resolve: () => {}, reject: () => {} });
  }

  _lose(err) {
    if (this._state === State.LOST || this._state === State.CLOSED) return;
    const lost = makeError('SESSION_EXPIRED', err.message, { cause: err });
    this._teardown(State.LOST, lost);
  }

  _setState(state) {
    this._state = state;
    this._emitState(state);
  }

  // A listener that throws must not leave the client half-way through a transition: its error
  // is rethrown on its own tick.
  _emitState(state) {
    try {
      this.emit('state', state);
    } catch (err) {
      process.nextTick(() => {
        throw err;
      });
    }
  }

  // Ends everything: the stream, timers, waiting requests and watches.
  _teardown(state, err, emit = true) {
    if (this._state === State.LOST || this._state === State.CLOSED) return;
    for (const key of Object.keys(this._timers)) {
      clearTimeout(this._timers[key]);
      clearInterval(this._timers[key]);
      this._timers[key] = null;
    }
    this._dropLink();
    const waiting = [...this._inflight.values(), ...this._queue];
    this._inflight.clear();
    this._queue = [];
    this._outbox = [];
    this._state = state;
    for (const req of waiting) {
      if (req.timer) clearTimeout(req.timer);
      req.reject(err);
    }
    const watchers = [...this._watchers];
    this._watchers.clear();
    for (const w of watchers) w.end(state === State.CLOSED ? null : err);
    if (emit) this._emitState(state);
    if (this._startPromise) this._settleStart(err);
  }
}

function watchCallback(options) {
  const watch = options && options.watch;
  if (watch === undefined || watch === null || watch === false) return null;
  if (typeof watch !== 'function') throw new TypeError('options.watch must be a function(event)');
  return watch;
}

module.exports = { Client, Op, State, CreateMode, EventType };
