// A real Moray-protocol server (node-fast FastServer on 127.0.0.1), in
// memory, answering the RPCs the npm `moray` client makes: buckets with
// index, version and reindex state; objects with _id/_etag/_mtime; etag
// conditions, unique indexes, LDAP filters, sort/limit/offset, `_count`,
// atomic batches and reindexObjects.
//
// Filters are evaluated as Moray does: the clauses on indexed fields (and
// _id/_key/_etag/_mtime) select rows by their *index columns* ("SQL"), sort,
// count, limit and offset apply, and then the whole filter is checked
// against the stored value. Index columns are computed when a row is written
// or reindexed, so rows written before a bucket update that added an index
// field are invisible to filters on that field until reindexObjects has
// processed them (an old Moray's behaviour, the worst case for clients).
//
// Failure modes: stop()/start() (connections dropped, then refused; back on
// the same port), latencyMs / rpcLatencyMs (slow replies), failNext(rpc,
// errorName) (a Moray error reply), block(rpc) (hold requests until
// released).

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import net from 'node:net';

import bunyan from 'bunyan';

const require = createRequire(import.meta.url);

// ---- untyped packages

interface FastRpc {
    argv(): unknown[];
    methodName(): string;
    write(obj: unknown): boolean;
    end(): void;
    fail(err: Error): void;
}

interface FastServerLike {
    registerRpcMethod(args: { rpcmethod: string; rpchandler: (rpc: FastRpc) => void }): void;
    close(): void;
}

const fast = require('fast') as {
    FastServer: new (args: { log: bunyan; server: net.Server }) => FastServerLike;
};

interface LdapNode {
    type: string;
    attribute?: string;
    value?: unknown;
    filters?: LdapNode[];
    filter?: LdapNode;
    initial?: string;
    any?: string[];
    final?: string;
}

const ldap = require('ldap-filter') as { parse(s: string): LdapNode };

// ---- state

export interface FakeIndexDef {
    type: string;
    unique?: boolean;
}

export interface FakeRow {
    key: string;
    /** JSON text, as Moray keeps `_value`. */
    json: string;
    _id: number;
    _etag: string;
    _mtime: number;
    /** Bucket version the row was last indexed at (null: before versioning). */
    _rver: number | null;
    /** Index column values as of the last write or reindex. */
    cols: Record<string, unknown>;
    /** Last-write order (an unsorted scan returns rows in this order, like a PG heap). */
    seq: number;
}

export interface FakeBucket {
    name: string;
    index: Record<string, FakeIndexDef>;
    options: { version: number } & Record<string, unknown>;
    mtime: Date;
    reindexActive: Record<string, string[]>;
    rows: Map<string, FakeRow>;
    nextId: number;
}

export interface FakeMorayState {
    buckets: Map<string, FakeBucket>;
}

export interface FakeRequest {
    method: string;
    args: unknown[];
}

/** An error as a Moray server sends it: `name`, `message`, `context`. */
class MorayError extends Error {
    constructor(
        name: string,
        message: string,
        readonly context: Record<string, unknown> = {},
    ) {
        super(message);
        this.name = name;
    }
}

const BUCKET_NAME_RE = /^[a-zA-Z]\w{0,62}$/;
const INDEX_NAME_RE = /^(_[a-zA-Z0-9]+|[a-zA-Z][_a-zA-Z0-9]*[a-zA-Z0-9]|[a-zA-Z])$/;
const RESERVED_BUCKETS = ['buckets_config', 'moray', 'search'];
const RESERVED_INDEXES = ['_etag', '_id', '_key', '_atime', '_ctime', '_mtime', '_rver', '_txn_snap', '_value', '_vnode'];
const INDEX_TYPES = ['string', 'number', 'boolean', 'ip', 'subnet'];
const INTERNAL_FIELDS = ['_id', '_key', '_etag', '_mtime'];

function etagOf(json: string): string {
    return createHash('sha1').update(json).digest('hex').slice(0, 8).toUpperCase();
}

function indexValue(v: unknown, type: string): unknown {
    if (v === undefined || v === null) {
        return null;
    }
    if (Array.isArray(v)) {
        const vals = v.map((x) => indexValue(x, type)).filter((x) => x !== null);
        return vals.length > 0 ? vals : null;
    }
    switch (type) {
        case 'number':
            return typeof v === 'number' || typeof v === 'string' ? Number.parseInt(String(v), 10) : null;
        case 'boolean':
            return typeof v === 'boolean' ? v : typeof v === 'string' ? /^true$/i.test(v) : null;
        default:
            return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : null;
    }
}

function indexRow(index: Record<string, FakeIndexDef>, value: Record<string, unknown>): Record<string, unknown> {
    const cols: Record<string, unknown> = {};
    for (const [field, def] of Object.entries(index)) {
        cols[field] = indexValue(value[field], def.type);
    }
    return cols;
}

function validateIndex(index: unknown): Record<string, FakeIndexDef> {
    if (index === undefined || index === null) {
        return {};
    }
    if (typeof index !== 'object' || Array.isArray(index)) {
        throw new MorayError('InvalidBucketConfigError', 'index must be an object');
    }
    const out: Record<string, FakeIndexDef> = {};
    for (const [k, d] of Object.entries(index as Record<string, unknown>)) {
        if (!INDEX_NAME_RE.test(k)) {
            throw new MorayError('InvalidBucketConfigError', `invalid index name "${k}"`);
        }
        if (RESERVED_INDEXES.includes(k.toLowerCase()) || /^_*moray/.test(k.toLowerCase())) {
            throw new MorayError('InvalidBucketConfigError', `index name "${k}" is reserved for use by Moray`);
        }
        const def = d as { type?: unknown; unique?: unknown };
        if (typeof def?.type !== 'string' || !INDEX_TYPES.includes(def.type)) {
            throw new MorayError('InvalidIndexTypeError', `index "${k}" has an invalid type`);
        }
        out[k] = def.unique ? { type: def.type, unique: true } : { type: def.type };
    }
    return out;
}

// ---- filters

type Sql = 'T' | 'F' | 'U' | 'N'; // true, false, SQL unknown (NULL), no clause (unindexed)

function isInternal(attr: string): boolean {
    return INTERNAL_FIELDS.includes(attr);
}

function column(bucket: FakeBucket, row: FakeRow, attr: string): unknown {
    switch (attr) {
        case '_id':
            return row._id;
        case '_key':
            return row.key;
        case '_etag':
            return row._etag;
        case '_mtime':
            return row._mtime;
        default:
            return row.cols[attr] ?? null;
    }
}

function attrType(bucket: FakeBucket, attr: string): string {
    if (attr === '_id' || attr === '_mtime') {
        return 'number';
    }
    return bucket.index[attr]?.type ?? 'string';
}

function coerce(v: unknown, type: string): unknown {
    if (type === 'number') {
        return Number.parseInt(String(v), 10);
    }
    if (type === 'boolean') {
        return /^true$/i.test(String(v));
    }
    return String(v);
}

function globRegExp(n: LdapNode): RegExp {
    const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const parts = [n.initial ?? '', ...(n.any ?? []), n.final ?? ''].map(esc);
    return new RegExp(`^${parts.join('.*')}$`, 's');
}

function cmp(a: unknown, b: unknown): number {
    if (typeof a === 'number' && typeof b === 'number') {
        return a - b;
    }
    const x = String(a);
    const y = String(b);
    return x < y ? -1 : x > y ? 1 : 0;
}

function anyOf(col: unknown, test: (v: unknown) => boolean): boolean {
    return Array.isArray(col) ? col.some(test) : test(col);
}

/** The "SQL" part: clauses on indexed/internal fields, over index columns. */
function sqlEval(bucket: FakeBucket, row: FakeRow, n: LdapNode): Sql {
    const attr = n.attribute ?? '';
    const indexed = isInternal(attr) || attr in bucket.index;
    switch (n.type) {
        case 'and': {
            const parts = (n.filters ?? []).map((f) => sqlEval(bucket, row, f)).filter((r) => r !== 'N');
            if (parts.length === 0) {
                return 'N';
            }
            return parts.includes('F') ? 'F' : parts.includes('U') ? 'U' : 'T';
        }
        case 'or': {
            const parts = (n.filters ?? []).map((f) => sqlEval(bucket, row, f));
            if (parts.length === 0 || parts.includes('N')) {
                throw new MorayError('NotIndexedError', `${bucket.name} does not have indexes that support this filter`);
            }
            return parts.includes('T') ? 'T' : parts.includes('U') ? 'U' : 'F';
        }
        case 'not': {
            const r = sqlEval(bucket, row, n.filter as LdapNode);
            return r === 'T' ? 'F' : r === 'F' ? 'T' : r;
        }
        case 'present':
            if (!indexed) {
                return 'N';
            }
            return column(bucket, row, attr) === null ? 'F' : 'T';
        case 'equal':
        case 'ge':
        case 'le':
        case 'substring': {
            if (!indexed) {
                return 'N';
            }
            const col = column(bucket, row, attr);
            if (col === null) {
                return 'U';
            }
            const type = attrType(bucket, attr);
            let test: (v: unknown) => boolean;
            if (n.type === 'substring') {
                const re = globRegExp(n);
                test = (v) => re.test(String(v));
            } else {
                const want = coerce(n.value, type);
                test =
                    n.type === 'equal'
                        ? (v) => v === want
                        : n.type === 'ge'
                          ? (v) => cmp(v, want) >= 0
                          : (v) => cmp(v, want) <= 0;
            }
            return anyOf(col, test) ? 'T' : 'F';
        }
        default:
            return 'N';
    }
}

/** The post-filter: the whole filter against the stored value (plus _id, _etag, ...). */
function valueEval(bucket: FakeBucket, obj: Record<string, unknown>, n: LdapNode): boolean {
    switch (n.type) {
        case 'and':
            return (n.filters ?? []).every((f) => valueEval(bucket, obj, f));
        case 'or':
            return (n.filters ?? []).some((f) => valueEval(bucket, obj, f));
        case 'not':
            return !valueEval(bucket, obj, n.filter as LdapNode);
        default:
            break;
    }
    const attr = n.attribute ?? '';
    const v = attr in obj ? obj[attr] : obj[Object.keys(obj).find((k) => k.toLowerCase() === attr.toLowerCase()) ?? ''];
    if (n.type === 'present') {
        return v !== undefined && v !== null;
    }
    if (v === undefined || v === null) {
        return false;
    }
    const numeric = isInternal(attr) ? attr === '_id' || attr === '_mtime' : bucket.index[attr]?.type === 'number';
    const want = numeric ? Number.parseInt(String(n.value), 10) : n.value;
    switch (n.type) {
        case 'equal':
            return anyOf(v, (x) => x === want || (bucket.index[attr]?.type === 'boolean' && String(x) === String(want)));
        case 'ge':
            return anyOf(v, (x) => cmp(x, want) >= 0);
        case 'le':
            return anyOf(v, (x) => cmp(x, want) <= 0);
        case 'substring': {
            const re = globRegExp(n);
            return anyOf(v, (x) => typeof x === 'string' && re.test(x));
        }
        default:
            return false;
    }
}

interface SortSpec {
    attribute: string;
    order?: string;
}

// ---- the server

export interface FakeMorayOptions {
    /** Listen on this port (default: any free port). */
    port?: number;
    log?: bunyan;
}

export class FakeMoray {
    readonly host = '127.0.0.1';
    port = 0;
    /** Delay before every reply. */
    latencyMs = 0;
    /** Extra delay per RPC name. */
    rpcLatencyMs: Record<string, number> = {};
    readonly state: FakeMorayState = { buckets: new Map() };
    /** Every request received, in order. */
    readonly requests: FakeRequest[] = [];

    private readonly log: bunyan;
    private server: net.Server | null = null;
    private fastServer: FastServerLike | null = null;
    private readonly sockets = new Set<net.Socket>();
    private readonly failures: { rpc: string; name: string; message: string; count: number }[] = [];
    private readonly blocks = new Map<
        string,
        { promise: Promise<void>; release: () => void; when: (args: unknown[]) => boolean }
    >();
    private readonly holding = new Map<string, number>();
    private writeSeq = 0;

    constructor(opts: FakeMorayOptions = {}) {
        this.port = opts.port ?? 0;
        this.log = opts.log ?? bunyan.createLogger({ name: 'fake-moray', level: bunyan.FATAL + 1 });
    }

    get running(): boolean {
        return this.server !== null;
    }

    /** Listen (again, on the same port after stop()). */
    async start(): Promise<void> {
        if (this.server) {
            return;
        }
        const server = net.createServer();
        server.on('connection', (sock: net.Socket) => {
            // A reply is several small writes (data..., end): without this,
            // Nagle and delayed ACKs add ~40 ms to each.
            sock.setNoDelay(true);
            this.sockets.add(sock);
            sock.on('close', () => this.sockets.delete(sock));
        });
        const fs = new fast.FastServer({ log: this.log, server });
        for (const [name, fn] of Object.entries(this.handlers())) {
            fs.registerRpcMethod({ rpcmethod: name, rpchandler: (rpc) => this.dispatch(name, rpc, fn) });
        }
        await new Promise<void>((resolve, reject) => {
            server.once('error', reject);
            server.listen(this.port, this.host, () => {
                server.removeListener('error', reject);
                resolve();
            });
        });
        this.port = (server.address() as net.AddressInfo).port;
        this.server = server;
        this.fastServer = fs;
    }

    /** Drop every connection and refuse new ones (state is kept). */
    async stop(): Promise<void> {
        const server = this.server;
        if (!server) {
            return;
        }
        this.server = null;
        this.fastServer?.close();
        this.fastServer = null;
        for (const s of this.sockets) {
            s.destroy();
        }
        this.sockets.clear();
        await new Promise<void>((resolve) => server.close(() => resolve()));
    }

    close(): Promise<void> {
        for (const b of [...this.blocks.values()]) {
            b.release();
        }
        return this.stop();
    }

    /** The next `count` calls of `rpc` fail with a Moray error named `errorName`. */
    failNext(rpc: string, errorName: string, opts: { count?: number; message?: string } = {}): void {
        this.failures.push({
            rpc,
            name: errorName,
            message: opts.message ?? `injected ${errorName}`,
            count: opts.count ?? 1,
        });
    }

    /** Hold calls of `rpc` (those whose arguments pass `when`) until the returned function is called. */
    block(rpc: string, when: (args: unknown[]) => boolean = () => true): () => void {
        let release!: () => void;
        const promise = new Promise<void>((resolve) => {
            release = () => {
                if (this.blocks.get(rpc)?.promise === promise) {
                    this.blocks.delete(rpc);
                }
                resolve();
            };
        });
        this.blocks.set(rpc, { promise, release, when });
        return release;
    }

    /** How many calls of `rpc` a block() is holding right now. */
    held(rpc: string): number {
        return this.holding.get(rpc) ?? 0;
    }

    requestsOf(method: string): FakeRequest[] {
        return this.requests.filter((r) => r.method === method);
    }

    /** Forget every bucket and object (and injected failures). */
    reset(): void {
        this.state.buckets.clear();
        this.failures.length = 0;
        this.requests.length = 0;
    }

    // ---- dispatch

    private dispatch(
        name: string,
        rpc: FastRpc,
        fn: (args: unknown[], write: (o: unknown) => void) => void,
    ): void {
        const args = rpc.argv();
        this.requests.push({ method: name, args });
        const delay = this.latencyMs + (this.rpcLatencyMs[name] ?? 0);
        const run = async (): Promise<void> => {
            if (delay > 0) {
                await new Promise((r) => setTimeout(r, delay));
            }
            const blocked = this.blocks.get(name);
            if (blocked?.when(args)) {
                this.holding.set(name, (this.holding.get(name) ?? 0) + 1);
                await blocked.promise;
                this.holding.set(name, (this.holding.get(name) ?? 1) - 1);
            }
            const i = this.failures.findIndex((f) => f.rpc === name);
            if (i >= 0) {
                const f = this.failures[i] as (typeof this.failures)[number];
                if (--f.count <= 0) {
                    this.failures.splice(i, 1);
                }
                throw new MorayError(f.name, f.message);
            }
            const out: unknown[] = [];
            fn(args, (o) => out.push(o));
            for (const o of out) {
                rpc.write(o);
            }
            rpc.end();
        };
        run().catch((err: unknown) => {
            rpc.fail(err instanceof Error ? err : new Error(String(err)));
        });
    }

    private bucket(name: unknown): FakeBucket {
        const b = typeof name === 'string' ? this.state.buckets.get(name) : undefined;
        if (!b) {
            throw new MorayError('BucketNotFoundError', `${String(name)} does not exist`, { bucket: name });
        }
        return b;
    }

    private bucketRecord(b: FakeBucket): Record<string, unknown> {
        return {
            name: b.name,
            index: JSON.stringify(b.index),
            pre: '[]',
            post: '[]',
            options: JSON.stringify(b.options),
            mtime: b.mtime.toISOString(),
            reindex_active: JSON.stringify(b.reindexActive),
        };
    }

    private objectRecord(b: FakeBucket, row: FakeRow): Record<string, unknown> {
        return {
            bucket: b.name,
            key: row.key,
            value: JSON.parse(row.json) as unknown,
            _id: row._id,
            _etag: row._etag,
            _mtime: row._mtime,
            _txn_snap: null,
        };
    }

    private handlers(): Record<string, (args: unknown[], write: (o: unknown) => void) => void> {
        return {
            createBucket: ([name, cfg]) => this.createBucket(name, cfg),
            updateBucket: ([name, cfg, opts]) => this.updateBucket(name, cfg, opts),
            getBucket: ([, name], write) => write(this.bucketRecord(this.bucket(name))),
            listBuckets: (_args, write) => {
                for (const b of this.state.buckets.values()) {
                    write(this.bucketRecord(b));
                }
            },
            delBucket: ([name]) => {
                this.bucket(name);
                this.state.buckets.delete(name as string);
            },
            putObject: ([bucket, key, value, opts], write) => {
                const rows = this.txn();
                const etag = this.put(rows, bucket, key, value, opts);
                this.commit(rows);
                write({ etag });
            },
            getObject: ([bucket, key, opts], write) => {
                const b = this.bucket(bucket);
                const row = b.rows.get(String(key));
                if (!row) {
                    throw new MorayError('ObjectNotFoundError', `${String(bucket)}::${String(key)} does not exist`, {
                        bucket,
                        key,
                    });
                }
                if ((opts as { internalOpts?: { sendHandledOptions?: boolean } })?.internalOpts?.sendHandledOptions) {
                    write({ _handledOptions: [] });
                }
                write(this.objectRecord(b, row));
            },
            delObject: ([bucket, key, opts]) => {
                const rows = this.txn();
                this.del(rows, bucket, key, opts);
                this.commit(rows);
            },
            findObjects: ([bucket, filter, opts], write) => this.find(bucket, filter, opts, write),
            batch: ([requests], write) => {
                if (!Array.isArray(requests)) {
                    throw new MorayError('InvalidArgumentError', 'requests must be an array');
                }
                const rows = this.txn();
                const etags: { bucket: string; key: string; etag: string }[] = [];
                for (const r of requests as Record<string, unknown>[]) {
                    const op = r.operation ?? 'put';
                    if (op === 'put') {
                        const etag = this.put(rows, r.bucket, r.key, r.value, r.options);
                        etags.push({ bucket: String(r.bucket), key: String(r.key), etag });
                    } else if (op === 'delete') {
                        this.del(rows, r.bucket, r.key, r.options);
                    } else {
                        throw new MorayError('InvalidArgumentError', `batch operation ${JSON.stringify(op)} not supported here`);
                    }
                }
                this.commit(rows);
                write({ etags });
            },
            reindexObjects: ([bucket, count, opts], write) => write(this.reindex(bucket, count, opts)),
            ping: () => undefined,
            version: (_args, write) => write({ version: 3 }),
        };
    }

    // ---- buckets

    private createBucket(name: unknown, cfg: unknown): void {
        if (typeof name !== 'string' || !BUCKET_NAME_RE.test(name) || RESERVED_BUCKETS.includes(name)) {
            throw new MorayError('InvalidBucketNameError', `${String(name)} is not a valid bucket name`);
        }
        const c = (cfg ?? {}) as { index?: unknown; options?: { version?: unknown } };
        const index = validateIndex(c.index);
        if (this.state.buckets.has(name)) {
            throw new MorayError('BucketConflictError', `${name} already exists`, { bucket: name });
        }
        this.state.buckets.set(name, {
            name,
            index,
            options: { ...(c.options ?? {}), version: Number(c.options?.version ?? 0) || 0 },
            mtime: new Date(),
            reindexActive: {},
            rows: new Map(),
            nextId: 1,
        });
    }

    private updateBucket(name: unknown, cfg: unknown, opts: unknown): void {
        const b = this.bucket(name);
        const c = (cfg ?? {}) as { index?: unknown; options?: { version?: unknown } };
        const index = validateIndex(c.index);
        const v = b.options.version;
        const v2 = Number(c.options?.version ?? 0) || 0;
        if (v !== 0 && v >= v2) {
            throw new MorayError('BucketVersionError', `${b.name}: version ${v2} is not newer than ${v}`, {
                bucket: b.name,
            });
        }
        const added = Object.keys(index).filter((k) => !(k in b.index));
        const dropped = Object.keys(b.index).filter((k) => !(k in index));
        if (v2 !== 0 && !(opts as { no_reindex?: boolean })?.no_reindex) {
            const cur = b.reindexActive[String(v2)] ?? [];
            b.reindexActive = { ...b.reindexActive, [String(v2)]: [...cur, ...added.filter((f) => !cur.includes(f))] };
        }
        // Dropped columns go; added ones are empty (NULL) until a row is rewritten or reindexed.
        for (const [key, row] of b.rows) {
            const cols = { ...row.cols };
            for (const f of dropped) {
                delete cols[f];
            }
            b.rows.set(key, { ...row, cols });
        }
        b.index = index;
        b.options = { ...(c.options ?? {}), version: v2 };
        b.mtime = new Date();
    }

    private reindex(name: unknown, count: unknown, opts: unknown): Record<string, number> {
        const b = this.bucket(name);
        const n = Number(count);
        if (!(n >= 1)) {
            throw new MorayError('InvalidArgumentError', `count ${String(count)} < 1`);
        }
        if (Object.keys(b.reindexActive).length === 0) {
            return { processed: 0 };
        }
        const version = b.options.version;
        const stale = (r: FakeRow): boolean => r._rver === null || r._rver < version;
        const todo = [...b.rows.values()]
            .filter(stale)
            .sort((x, y) => x._id - y._id)
            .slice(0, n);
        for (const row of todo) {
            const value = JSON.parse(row.json) as Record<string, unknown>;
            b.rows.set(row.key, { ...row, cols: indexRow(b.index, value), _rver: version });
        }
        if (todo.length === 0) {
            b.reindexActive = {};
        }
        const out: Record<string, number> = { processed: todo.length };
        if (!(opts as { no_count?: boolean })?.no_count) {
            out.remaining = [...b.rows.values()].filter(stale).length;
        }
        return out;
    }

    // ---- objects (within a transaction: copies of the touched buckets' row maps)

    private txn(): Map<string, { rows: Map<string, FakeRow>; nextId: number }> {
        return new Map();
    }

    private rowsOf(
        tx: Map<string, { rows: Map<string, FakeRow>; nextId: number }>,
        b: FakeBucket,
    ): { rows: Map<string, FakeRow>; nextId: number } {
        let t = tx.get(b.name);
        if (!t) {
            t = { rows: new Map(b.rows), nextId: b.nextId };
            tx.set(b.name, t);
        }
        return t;
    }

    private commit(tx: Map<string, { rows: Map<string, FakeRow>; nextId: number }>): void {
        for (const [name, t] of tx) {
            const b = this.state.buckets.get(name);
            if (b) {
                b.rows = t.rows;
                b.nextId = t.nextId;
            }
        }
    }

    private checkEtag(bucket: string, key: string, opts: unknown, current: FakeRow | undefined): void {
        const o = (opts ?? {}) as { etag?: unknown; _etag?: unknown };
        const etag = o.etag !== undefined ? o.etag : o._etag;
        if (etag === undefined) {
            return;
        }
        const old = current?._etag ?? null;
        if (etag === null ? old !== null : etag !== old) {
            throw new MorayError(
                'EtagConflictError',
                `wanted to put etag ${JSON.stringify(etag)} on ${bucket}::${key}, but object has etag ${JSON.stringify(old)}`,
                { bucket, key, expected: etag === null ? 'null' : etag, actual: old ?? 'null' },
            );
        }
    }

    private put(
        tx: Map<string, { rows: Map<string, FakeRow>; nextId: number }>,
        bucket: unknown,
        key: unknown,
        value: unknown,
        opts: unknown,
    ): string {
        const b = this.bucket(bucket);
        if (typeof key !== 'string' || !value || typeof value !== 'object' || Array.isArray(value)) {
            throw new MorayError('InvalidArgumentError', 'key must be a string and value an object');
        }
        const t = this.rowsOf(tx, b);
        const prev = t.rows.get(key);
        this.checkEtag(b.name, key, opts, prev);
        const v = value as Record<string, unknown>;
        const cols = indexRow(b.index, v);
        for (const [field, def] of Object.entries(b.index)) {
            const c = cols[field];
            if (!def.unique || c === null) {
                continue;
            }
            for (const other of t.rows.values()) {
                if (other.key !== key && other.cols[field] === c) {
                    throw new MorayError('UniqueAttributeError', `${field} ${JSON.stringify(c)} already exists`, {
                        bucket: b.name,
                        key,
                    });
                }
            }
        }
        const json = JSON.stringify(v);
        const row: FakeRow = {
            key,
            json,
            _id: prev?._id ?? t.nextId++,
            _etag: etagOf(json),
            _mtime: Date.now(),
            _rver: b.options.version || null,
            cols,
            seq: ++this.writeSeq,
        };
        t.rows.set(key, row);
        return row._etag;
    }

    private del(
        tx: Map<string, { rows: Map<string, FakeRow>; nextId: number }>,
        bucket: unknown,
        key: unknown,
        opts: unknown,
    ): void {
        const b = this.bucket(bucket);
        const t = this.rowsOf(tx, b);
        const prev = t.rows.get(String(key));
        if (!prev) {
            throw new MorayError('ObjectNotFoundError', `${b.name}::${String(key)} does not exist`, {
                bucket: b.name,
                key,
            });
        }
        this.checkEtag(b.name, String(key), opts, prev);
        t.rows.delete(String(key));
    }

    private find(bucket: unknown, filter: unknown, opts: unknown, write: (o: unknown) => void): void {
        const b = this.bucket(bucket);
        const o = (opts ?? {}) as {
            limit?: number;
            offset?: number;
            noLimit?: boolean;
            no_count?: boolean;
            sort?: SortSpec | SortSpec[];
            requireIndexes?: boolean;
            internalOpts?: { sendHandledOptions?: boolean };
        };
        let f: LdapNode;
        try {
            if (typeof filter !== 'string' || filter.length === 0) {
                throw new Error('filter must be a non-empty string');
            }
            f = ldap.parse(filter);
        } catch (err) {
            throw new MorayError('InvalidQueryError', `invalid filter ${String(filter)}: ${(err as Error).message}`);
        }
        if (o.internalOpts?.sendHandledOptions) {
            write({ _handledOptions: ['requireIndexes'] });
        }
        if (o.requireIndexes) {
            const walk = (n: LdapNode): void => {
                if (n.filters) {
                    n.filters.forEach(walk);
                } else if (n.filter) {
                    walk(n.filter);
                } else if (n.attribute && !isInternal(n.attribute) && !(n.attribute in b.index)) {
                    throw new MorayError('NotIndexedError', `${b.name} does not have an index on ${n.attribute}`);
                }
            };
            walk(f);
        }
        const rows = [...b.rows.values()].sort((x, y) => x.seq - y.seq);
        const selected = rows.filter((row) => {
            const r = sqlEval(b, row, f);
            if (r === 'N') {
                throw new MorayError('NotIndexedError', `${b.name} does not have indexes that support ${filter}`);
            }
            return r === 'T';
        });
        const sorts = o.sort === undefined ? [] : Array.isArray(o.sort) ? o.sort : [o.sort];
        if (sorts.length > 0) {
            selected.sort((x, y) => {
                for (const s of sorts) {
                    const desc = String(s.order ?? 'ASC').toUpperCase() === 'DESC';
                    const a = column(b, x, s.attribute);
                    const c = column(b, y, s.attribute);
                    let d: number;
                    if (a === null || c === null) {
                        // NULLS LAST for ASC, NULLS FIRST for DESC (PostgreSQL's default).
                        d = a === c ? 0 : a === null ? 1 : -1;
                    } else {
                        d = desc ? -cmp(a, c) : cmp(a, c);
                    }
                    if (d !== 0) {
                        return d;
                    }
                }
                return 0;
            });
        }
        const count = selected.length;
        const offset = o.offset ?? 0;
        const limit = o.noLimit ? Infinity : o.limit || 1000;
        for (const row of selected.slice(offset, offset + limit)) {
            const rec = this.objectRecord(b, row);
            const check = { ...(rec.value as Record<string, unknown>), _id: row._id, _etag: row._etag, _mtime: row._mtime, _key: row.key };
            if (!valueEval(b, check, f)) {
                continue;
            }
            write(o.no_count ? rec : { ...rec, _count: count });
        }
    }
}

/** A started fake Moray. */
export async function startFakeMoray(opts: FakeMorayOptions = {}): Promise<FakeMoray> {
    const fake = new FakeMoray(opts);
    await fake.start();
    return fake;
}
