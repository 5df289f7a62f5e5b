// Type declarations for confab, the Node.js client of Confab (hand-written; keep in step with
// lib/client.js, lib/watch.js and lib/errors.js).

import { EventEmitter } from 'node:events';

/** Node data: strings are written as UTF-8. */
export type Data = string | Buffer | Uint8Array | null | undefined;

/** An int64 given by the application: a bigint, a safe integer or a decimal string. */
export type Int64Like = bigint | number | string;

export type CreateModeName = 'PERSISTENT' | 'EPHEMERAL' | 'PERSISTENT_SEQUENTIAL' | 'EPHEMERAL_SEQUENTIAL';
export declare const CreateMode: Readonly<{ [K in CreateModeName]: K }>;

export type StateName = 'CONNECTED' | 'SUSPENDED' | 'RECONNECTED' | 'LOST' | 'CLOSED';
export declare const State: Readonly<{ [K in StateName]: K }>;

export type EventTypeName =
  | 'NODE_CREATED'
  | 'NODE_DELETED'
  | 'NODE_DATA_CHANGED'
  | 'NODE_CHILDREN_CHANGED'
  /** The watch may have missed events (the server's history did not reach back): re-read. */
  | 'WATCHES_LOST';
export declare const EventType: Readonly<{ [K in EventTypeName]: K }>;

export type ErrorCodeName =
  | 'OK'
  | 'NO_NODE'
  | 'NODE_EXISTS'
  | 'BAD_VERSION'
  | 'NOT_EMPTY'
  | 'NO_CHILDREN_FOR_EPHEMERALS'
  | 'SESSION_EXPIRED'
  | 'INVALID_PATH'
  | 'TOO_LARGE'
  | 'INVALID_ARGUMENT'
  | 'RUNTIME_INCONSISTENCY'
  | 'UNAVAILABLE'
  | 'INTERNAL'
  | 'UNIMPLEMENTED'
  /** Client side: the stream broke with this write in flight (it may or may not have applied),
   * or no server was reachable in time. */
  | 'CONNECTION_LOSS'
  /** Client side: the client is closed. */
  | 'CLOSED';
export declare const ErrorCode: Readonly<{ [K in ErrorCodeName]: K }>;

/** As ZooKeeper's Stat. zxids and the owner's session id are bigint; times are ms since the epoch. */
export interface Stat {
  czxid: bigint;
  mzxid: bigint;
  pzxid: bigint;
  ctime: number;
  mtime: number;
  version: number;
  cversion: number;
  /** The owning session of an ephemeral node, 0n otherwise. */
  ephemeralOwner: bigint;
  dataLength: number;
  numChildren: number;
}

export interface WatchEvent {
  type: EventTypeName;
  path: string;
  /** The transaction that caused the event. */
  zxid: bigint;
}

export type WatchCallback = (event: WatchEvent) => void;

export interface ReadOptions {
  /** A one-shot watch: called once with the next matching event. */
  watch?: WatchCallback;
  /** The read reflects every write acknowledged before it was sent. */
  linearizable?: boolean;
}

export interface CreateOptions {
  mode?: CreateModeName;
}

export interface CreateResult {
  /** The created path, with the sequence suffix for sequential modes. */
  path: string;
  stat: Stat;
  zxid: bigint;
}

export interface GetResult {
  data: Buffer;
  stat: Stat;
  /** The zxid of the state this read saw. */
  zxid: bigint;
}

export interface SetResult {
  stat: Stat;
  zxid: bigint;
}

export interface DeleteResult {
  zxid: bigint;
}

export interface GetChildrenResult {
  /** Names, sorted. */
  children: string[];
  stat: Stat;
  zxid: bigint;
}

/** One operation of a multi, made by the Op helpers. */
export type MultiOp =
  | { create: { path: string; data: Buffer; mode: CreateModeName } }
  | { set: { path: string; data: Buffer; version?: number } }
  | { delete: { path: string; version?: number } }
  | { check: { path: string; version: number } };

export declare const Op: Readonly<{
  create(path: string, data?: Data, options?: CreateOptions | CreateModeName): MultiOp;
  /** version: the expected version; undefined or -1 for any. */
  set(path: string, data: Data, version?: number): MultiOp;
  delete(path: string, version?: number): MultiOp;
  check(path: string, version: number): MultiOp;
}>;

export type OpResult =
  | { type: 'create'; path: string; stat: Stat; zxid: bigint }
  | { type: 'set'; stat: Stat; zxid: bigint }
  | { type: 'delete'; zxid: bigint }
  | { type: 'check' }
  /** In a failed multi: the failing op's code, RUNTIME_INCONSISTENCY for the rolled-back ones. */
  | { type: 'error'; code: ErrorCodeName; message: string };

export interface MultiResult {
  /** Every op applied at this zxid. */
  zxid: bigint;
  results: OpResult[];
}

export interface WatchOptions {
  /** Also the subtree: created, deleted and data-changed events of every descendant. */
  recursive?: boolean;
  /** Replay the matching changes after this zxid first, then go on live. */
  startZxid?: Int64Like;
}

/** A persistent watch: an async iterator of events. Breaking out of `for await` removes it. */
export interface WatchStream extends AsyncIterableIterator<WatchEvent> {
  readonly path: string;
  readonly recursive: boolean;
  /** Resolves once the server has registered the watch (the zxid it was registered at). */
  readonly ready: Promise<{ zxid: bigint }>;
  /** Removes the watch; the iterator ends. */
  close(): Promise<void>;
  next(): Promise<IteratorResult<WatchEvent, undefined>>;
  return(): Promise<IteratorResult<WatchEvent, undefined>>;
}

export interface ClientOptions {
  /** "host:port,host:port" or a list of host:port. */
  endpoints: string | string[];
  /** Requested session timeout (the server clamps it). Default 10000. */
  sessionTimeoutMs?: number;
  /** Resume this session instead of opening a new one. */
  sessionId?: Int64Like;
  /** How long connect() keeps trying. Default 10000. */
  connectTimeoutMs?: number;
  /** How long one attempt waits for the server to answer OpenSession. Default 5000. */
  connectAttemptTimeoutMs?: number;
  /** Back-off before reconnecting, doubling up to maxReconnectDelayMs. Defaults 100 and 2000. */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Extra @grpc/grpc-js channel options. */
  grpcOptions?: Record<string, string | number>;
}

export declare class Client extends EventEmitter {
  /** Connects and resolves once the session is established. */
  static connect(options: ClientOptions): Promise<Client>;
  constructor(options: ClientOptions);
  /** For `new Client(options)`: opens (or resumes) the session. */
  connect(): Promise<void>;

  readonly sessionId: bigint;
  readonly sessionTimeoutMs: number;
  /** null while connecting the first time. */
  readonly state: StateName | null;
  /** The highest zxid seen in a response or an event. */
  readonly lastZxid: bigint;
  /** The endpoint of the current stream, null while disconnected. */
  readonly endpoint: string | null;

  create(path: string, data?: Data, options?: CreateOptions | CreateModeName): Promise<CreateResult>;
  get(path: string, options?: ReadOptions): Promise<GetResult>;
  /** version: the expected version; undefined or -1 for any. */
  set(path: string, data: Data, version?: number): Promise<SetResult>;
  delete(path: string, version?: number): Promise<DeleteResult>;
  /** The node's Stat, or null if it does not exist (a watch is set either way). */
  exists(path: string, options?: ReadOptions): Promise<Stat | null>;
  getChildren(path: string, options?: ReadOptions): Promise<GetChildrenResult>;
  /** All or nothing; on failure rejects with a ConfabError carrying failedOp and results. */
  multi(ops: MultiOp[]): Promise<MultiResult>;
  sync(path?: string): Promise<bigint>;
  watch(path: string, options?: WatchOptions): WatchStream;
  /** Closes the session (its ephemeral nodes are deleted) and releases everything. */
  close(): Promise<void>;

  on(event: 'state', listener: (state: StateName) => void): this;
  once(event: 'state', listener: (state: StateName) => void): this;
  off(event: 'state', listener: (state: StateName) => void): this;
  addListener(event: 'state', listener: (state: StateName) => void): this;
  removeListener(event: 'state', listener: (state: StateName) => void): this;
}

export interface ConfabErrorDetails {
  path?: string;
  failedOp?: number;
  results?: OpResult[];
  cause?: unknown;
}

export declare class ConfabError extends Error {
  constructor(code: ErrorCodeName, message?: string, details?: ConfabErrorDetails);
  readonly code: ErrorCodeName;
  /** The path the error is about ('' when none). */
  readonly path: string;
  /** Multi: the index of the first failing op. */
  readonly failedOp?: number;
  /** Multi: the outcome of each op. */
  readonly results?: OpResult[];
  static is(err: unknown, code?: ErrorCodeName): err is ConfabError;
}

/** True if err is a ConfabError (with that code, when given). */
export declare function isConfabError(err: unknown, code?: ErrorCodeName): err is ConfabError;

declare class CodedError extends ConfabError {
  constructor(message?: string, details?: ConfabErrorDetails);
}
export declare class NoNodeError extends CodedError { readonly code: 'NO_NODE'; }
export declare class NodeExistsError extends CodedError { readonly code: 'NODE_EXISTS'; }
export declare class BadVersionError extends CodedError { readonly code: 'BAD_VERSION'; }
export declare class NotEmptyError extends CodedError { readonly code: 'NOT_EMPTY'; }
export declare class NoChildrenForEphemeralsError extends CodedError { readonly code: 'NO_CHILDREN_FOR_EPHEMERALS'; }
export declare class SessionExpiredError extends CodedError { readonly code: 'SESSION_EXPIRED'; }
export declare class InvalidPathError extends CodedError { readonly code: 'INVALID_PATH'; }
export declare class TooLargeError extends CodedError { readonly code: 'TOO_LARGE'; }
export declare class InvalidArgumentError extends CodedError { readonly code: 'INVALID_ARGUMENT'; }
export declare class RuntimeInconsistencyError extends CodedError { readonly code: 'RUNTIME_INCONSISTENCY'; }
export declare class UnavailableError extends CodedError { readonly code: 'UNAVAILABLE'; }
export declare class InternalError extends CodedError { readonly code: 'INTERNAL'; }
export declare class UnimplementedError extends CodedError { readonly code: 'UNIMPLEMENTED'; }
export declare class ConnectionLossError extends CodedError { readonly code: 'CONNECTION_LOSS'; }
export declare class ClosedError extends CodedError { readonly code: 'CLOSED'; }
