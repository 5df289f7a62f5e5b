'use strict';

// Loads confab/v1/coordination.proto at run time. int64 fields travel as decimal strings (never
// as JS numbers, which would lose precision past 2^53) and are turned into BigInt by the client.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_FILE = path.join('confab', 'v1', 'coordination.proto');

// Where the proto lives: $CONFAB_PROTO_DIR, a copy shipped inside the package (proto/), or the
// repository's proto/ two levels above the package (bindings/node -> ../../proto).
function protoDir() {
  const candidates = [
    process.env.CONFAB_PROTO_DIR,
    path.resolve(__dirname, '..', 'proto'),
    path.resolve(__dirname, '..', '..', '..', 'proto'),
  ].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, PROTO_FILE))) return dir;
  }
  throw new Error(
    `confab: cannot find ${PROTO_FILE} (looked in ${candidates.join(', ')}); ` +
      'set CONFAB_PROTO_DIR to the directory holding confab/v1/coordination.proto',
  );
}

let loaded = null;

/** { Coordination: the grpc service client constructor } */
function load() {
  if (loaded) return loaded;
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [protoDir()],
    keepCase: false,
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition);
  loaded = { Coordination: pkg.confab.v1.Coordination };
  return loaded;
}

module.exports = { load, protoDir };
