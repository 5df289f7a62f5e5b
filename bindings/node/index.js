'use strict';

// confab: the Node.js client of Confab. See README.md and index.d.ts.
// (Plain `exports.X =` assignments so that ESM `import { Client } from 'confab'` sees every name.)

const client = require('./lib/client');
const errors = require('./lib/errors');

exports.Client = client.Client;
exports.Op = client.Op;
exports.State = client.State;
exports.CreateMode = client.CreateMode;
exports.EventType = client.EventType;
exports.ErrorCode = errors.ErrorCode;
exports.ConfabError = errors.ConfabError;
exports.isConfabError = errors.isConfabError;
exports.NoNodeError = errors.NoNodeError;
exports.NodeExistsError = errors.NodeExistsError;
exports.BadVersionError = errors.BadVersionError;
exports.NotEmptyError = errors.NotEmptyError;
exports.NoChildrenForEphemeralsError = errors.NoChildrenForEphemeralsError;
exports.SessionExpiredError = errors.SessionExpiredError;
exports.InvalidPathError = errors.InvalidPathError;
exports.TooLargeError = errors.TooLargeError;
exports.InvalidArgumentError = errors.InvalidArgumentError;
exports.RuntimeInconsistencyError = errors.RuntimeInconsistencyError;
exports.UnavailableError = errors.UnavailableError;
exports.InternalError = errors.InternalError;
exports.UnimplementedError = errors.UnimplementedError;
exports.ConnectionLossError = errors.ConnectionLossError;
exports.ClosedError = errors.ClosedError;
