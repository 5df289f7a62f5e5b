'use strict';

// A real confabd for tests: started on a free 127.0.0.1 port in a temporary data directory,
// stopped (exactly that process) at the end. The binary is $CONFABD, else the repository's
// build/server/confabd.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CONFABD =
  process.env.CONFABD || path.resolve(__dirname, '..', '..', '..', 'build', 'server', 'confabd');

const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 15000;

const running = new Set();
process.on('exit', () => {
  // A test that died half-way must not leave its server behind.
  for (const server of running) {
    try {
      process.kill(server.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class Confabd {
  constructor(dataDir, flags) {
    this.dataDir = dataDir;
    this.flags = flags;
    this.port = 0;
    this.child = null;
    this.pid = 0;
    this.logFile = path.join(path.dirname(dataDir), 'confabd.log');
  }

  /** "127.0.0.1:<port>" */
  get endpoint() {
    return `127.0.0.1:${this.port}`;
  }

  async start() {
    if (!fs.existsSync(CONFABD)) {
      throw new Error(
        `confabd not found at ${CONFABD}: build it (cmake --build build --target confabd) or set CONFABD`,
      );
    }
    const addressFile = path.join(this.dataDir, 'ADDRESS');
    fs.rmSync(addressFile, { force: true });
    const log = fs.openSync(this.logFile, 'a');
    const args = [`--data-dir=${this.dataDir}`, `--listen=127.0.0.1:${this.port}`, ...this.flags];
    const child = spawn(CONFABD, args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.child = child;
    this.pid = child.pid;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    running.add(this);
    let exitedEarly = null;
    this.exited.then((status) => {
      exitedEarly = status;
      running.delete(this);
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exitedEarly) {
        throw new Error(`confabd exited during start-up (${JSON.stringify(exitedEarly)}): ${this.logTail()}`);
      }
      let address = '';
      try {
        address = fs.readFileSync(addressFile, 'utf8').trim();
      } catch {
        // not yet
      }
      const port = Number(address.slice(address.lastIndexOf(':') + 1));
      if (address && port > 0) {
        this.port = port;
        return this;
      }
      await sleep(10);
    }
    await this.stop('SIGKILL');
    throw new Error(`confabd did not start listening within ${START_TIMEOUT_MS} ms: ${this.logTail()}`);
  }

  /** Stops this process (SIGTERM by default; SIGKILL if it does not exit in time). */
  async stop(signal = 'SIGTERM') {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(resolve, STOP_TIMEOUT_MS, 'timeout');
    });
    const outcome = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** SIGTERM, then start again on the same data directory and port. */
  async restart() {
    await this.stop();
    await this.start();
  }

  /** Stops the server and removes its directory. */
  async destroy() {
    await this.stop();
    fs.rmSync(path.dirname(this.dataDir), { recursive: true, force: true });
  }

  logTail() {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** Starts a confabd with extra `flags`; resolves to a Confabd (endpoint, restart(), destroy()). */
async function startConfabd(flags = []) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'confab-node-'));
  const dataDir = path.join(root, 'data');
  fs.mkdirSync(dataDir);
  const server = new Confabd(dataDir, flags);
  try {
    await server.start();
  } catch (err) {
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return server;
}

module.exports = { startConfabd, CONFABD };
