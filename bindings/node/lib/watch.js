'use strict';

// Watches on the client side: which events a watch takes (the server's matching rules), the
// exactly-once filter that makes a watch resumable across reconnects, and the async iterator of
// persistent watches.

/** Whether a watch of `kind` on `watchPath` takes `event` (mirrors server/watches Matches). */
function matches(kind, watchPath, event) {
  const atPath = event.path === watchPath;
  switch (kind) {
    case 'DATA_WATCH':
      return atPath && event.type !== 'NODE_CHILDREN_CHANGED';
    case 'CHILD_WATCH':
      return atPath && (event.type === 'NODE_CHILDREN_CHANGED' || event.type === 'NODE_DELETED');
    case 'PERSISTENT_WATCH':
      return atPath;
    case 'PERSISTENT_RECURSIVE_WATCH':
      return event.type !== 'NODE_CHILDREN_CHANGED' && inSubtree(event.path, watchPath);
    default:
      return false;
  }
}

function inSubtree(path, root) {
  if (root === '/') return path.startsWith('/');
  return path === root || path.startsWith(root + '/');
}

function keyOf(event) {
  return `${event.type} ${event.path}`;
}

// One watch of the application: a one-shot callback (from get/exists/getChildren) or a
// persistent watch feeding a WatchStream.
//
// Exactly-once delivery across reconnects: the watch remembers the highest zxid it has seen
// (`seen`) and which events at that zxid it delivered (`seenKeys`; null once every event at
// `seen` is known to be delivered). An event at or below that is a copy (a replay the server
// sends when the watch is re-added from an older zxid, or another watch's replay) and is dropped.
// An event is identified by (zxid, type, path).
class Watcher {
  constructor(client, { path, kind, oneShot, callback, stream, from }) {
    this.client = client;
    this.path = path;
    this.kind = kind;
    this.oneShot = oneShot;
    this.callback = callback || null;
    this.stream = stream || null;
    this.state = 'pending'; // pending (AddWatch in flight) | active | closed
    this.from = from || 0n; // start_zxid of the AddWatch in flight; 0n: from now on
    this.seen = 0n;
    this.seenKeys = null;
    this.buffer = []; // events taken while pending (replayed ones among them)
  }

  /** A live event for an active watch: delivered unless it is a copy of one delivered already. */
  offer(event) {
    if (this.state === 'closed') return;
    if (event.zxid < this.seen) return;
    const key = keyOf(event);
    if (event.zxid === this.seen) {
      if (this.seenKeys === null || this.seenKeys.has(key)) return;
      this.seenKeys.add(key);
    } else {
      this.seen = event.zxid;
      this.seenKeys = new Set([key]);
    }
    this.deliver(event);
  }

  /**
   * The AddWatch (or the read that set the watch) answered at zxid `zxid`. Events the server
   * replayed for it (those after `from`) came just before the answer, possibly mixed with copies
   * of live events of other watches: keep each event once, in zxid order, and the server's order
   * within a zxid (the replay comes last, so the last copy of each event is the replayed one).
   */
  activate(zxid, eventsMissed) {
    if (this.state === 'closed') return;
    const buffered = this.buffer;
    this.buffer = [];
    this.state = 'active';
    let events = [];
    if (this.from !== 0n && buffered.length > 0) {
      const last = new Map();
      buffered.forEach((e, i) => last.set(`${e.zxid} ${keyOf(e)}`, i));
      events = buffered
        .filter((e, i) => last.get(`${e.zxid} ${keyOf(e)}`) === i)
        .sort((a, b) => (a.zxid < b.zxid ? -1 : a.zxid > b.zxid ? 1 : 0)); // stable
    }
    if (eventsMissed && !(this.oneShot && events.length > 0)) {
      // The server's change history no longer reaches back to `from`: tell the application, which
      // re-reads what the watch covers.
      this.deliver(Object.freeze({ type: 'WATCHES_LOST', path: this.path, zxid }));
    }
    for (const event of events) this.offer(event);
    if (this.state !== 'closed' && zxid >= this.seen) {
      // Every matching event up to `zxid` has been delivered.
      this.seen = zxid;
      this.seenKeys = null;
    }
    if (this.stream) this.stream._ready(zxid);
  }

  deliver(event) {
    if (this.state === 'closed') return;
    if (this.oneShot) {
      this.client._dropWatcher(this);
      try {
        this.callback(event);
      } catch (err) {
        process.nextTick(() => {
          throw err;
        });
      }
    } else {
      this.stream._push(event);
    }
  }

  /** The watch ends: `err` null for a normal end (close), else the reason (session lost...). */
  end(err) {
    this.state = 'closed';
    this.buffer = [];
    if (this.stream) this.stream._end(err);
  }
}

/**
 * A persistent (optionally recursive) watch as an async iterator of events:
 *
 *   for await (const ev of client.watch('/config', { recursive: true })) { ... }
 *
 * Breaking out of the loop (or calling close()) removes the watch. `ready` resolves once the
 * server has registered it.
 */
class WatchStream {
  constructor(path, recursive) {
    this.path = path;
    this.recursive = recursive;
    this._watcher = null;
    this._queue = [];
    this._waiters = [];
    this._done = false;
    this._error = null;
    this._readyDone = false;
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // an unawaited `ready` must not be an unhandled rejection
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next() {
    if (this._queue.length > 0) return Promise.resolve({ value: this._queue.shift(), done: false });
    if (this._error) {
      const err = this._error;
      this._error = null;
      return Promise.reject(err);
    }
    if (this._done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  async return() {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Stops the watch (removing it from the server); pending and later next() calls end. */
  close() {
    this._queue = [];
    this._end(null);
    if (!this._watcher) return Promise.resolve();
    return this._watcher.client._closeWatcher(this._watcher);
  }

  _ready(zxid) {
    if (this._readyDone) return;
    this._readyDone = true;
    this._resolveReady({ zxid });
  }

  _push(event) {
    if (this._done) return;
    const waiter = this._waiters.shift();
    if (waiter) waiter.resolve({ value: event, done: false });
    else this._queue.push(event);
  }

  _end(err) {
    if (this._done) return;
    this._done = true;
    if (!this._readyDone) {
      this._readyDone = true;
      this._rejectReady(err || new Error('watch closed before it was registered'));
    }
    const waiters = this._waiters;
    this._waiters = [];
    if (err && waiters.length > 0) {
      for (const w of waiters) w.reject(err);
    } else if (err) {
      this._error = err; // thrown by the next next(), after the events already queued
    } else {
      for (const w of waiters) w.resolve({ value: undefined, done: true });
    }
  }
}

module.exports = { Watcher, WatchStream, matches };
