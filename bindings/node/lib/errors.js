'use strict';

// Errors of the Confab binding. Every failure of an operation is a ConfabError whose `code` is
// the server's ErrorCode name (NO_NODE, NODE_EXISTS, ...) or one of the client-side codes
// CONNECTION_LOSS (the connection broke while a write was in flight, or no server could be reached
// in time) and CLOSED (the client was closed). Each code has its own subclass, so both
// `err.code === 'NO_NODE'` and `err instanceof NoNodeError` work.

const SERVER_CODES = [
  'OK',
  'NO_NODE',
  'NODE_EXISTS',
  'BAD_VERSION',
  'NOT_EMPTY',
  'NO_CHILDREN_FOR_EPHEMERALS',
  'SESSION_EXPIRED',
  'INVALID_PATH',
  'TOO_LARGE',
  'INVALID_ARGUMENT',
  'RUNTIME_INCONSISTENCY',
  'UNAVAILABLE',
  'INTERNAL',
  'UNIMPLEMENTED',
];
const CLIENT_CODES = ['CONNECTION_LOSS', 'CLOSED'];

/** ErrorCode names as constants: ErrorCode.NO_NODE === 'NO_NODE'. */
const ErrorCode = Object.freeze(
  Object.fromEntries([...SERVER_CODES, ...CLIENT_CODES].map((c) => [c, c])),
);

class ConfabError extends Error {
  /**
   * @param {string} code ErrorCode name
   * @param {string} message
   * @param {{path?: string, failedOp?: number, results?: object[], cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message || code, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.path = details.path || '';
    if (details.failedOp !== undefined && details.failedOp >= 0) this.failedOp = details.failedOp;
    if (details.results !== undefined) this.results = details.results;
  }

  /** True if `err` is a ConfabError, and (when `code` is given) has that code. */
  static is(err, code) {
    return err instanceof ConfabError && (code === undefined || err.code === code);
  }
}

function className(code) {
  return (
    code
      .toLowerCase()
      .split('_')
      .map((w) => w[0].toUpperCase() + w.slice(1))
      .join('') + 'Error'
  );
}

const classes = {};
for (const code of [...SERVER_CODES.slice(1), ...CLIENT_CODES]) {
  const name = className(code); // NO_NODE -> NoNodeError
  // A named subclass per code; `code` is fixed by the class.
  const cls = {
    [name]: class extends ConfabError {
      constructor(message, details) {
        super(code, message, details);
      }
    },
  }[name];
  classes[name] = cls;
  classes[code] = cls;
}

/** A ConfabError of the right subclass for `code`. */
function makeError(code, message, details) {
  const cls = classes[code];
  return cls ? new cls(message, details) : new ConfabError(code, message, details);
}

/** The error of an in-band confab.v1.Error message (null when absent or OK). */
function fromProtoError(error, extra = {}) {
  if (!error || !error.code || error.code === 'OK') return null;
  return makeError(error.code, error.message || `${error.code} ${error.path || ''}`.trim(), {
    path: error.path,
    failedOp: error.failedOp,
    ...extra,
  });
}

/** True if `err` is a ConfabError (with `code`, when given). */
function isConfabError(err, code) {
  return ConfabError.is(err, code);
}

const exported = { ConfabError, ErrorCode, makeError, fromProtoError, isConfabError };
for (const code of [...SERVER_CODES.slice(1), ...CLIENT_CODES]) {
  exported[className(code)] = classes[code];
}
module.exports = exported;
