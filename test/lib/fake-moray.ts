// A real Moray-protocol server (node-fast FastServer on 127.0.0.1), in
// memory, answering the RPCs the npm `moray` client makes: buckets with
// index, version and reindex state; objects with _id/_etag/_mtime; etag
// conditions, unique indexes, LDAP filters, sort/limit/offset, `_count`,
// atomic batches and reindexObjects. `npm run moray-test-server` runs one on
// its own (test/lib/moray-test-server.ts).
//
// What it copies from moray-server (TritonDataCenter/moray lib/buckets/*.js,
// lib/objects/{common,put,find,reindex}.js), because clients can see it:
//
// - getBucket/listBuckets send the buckets_config row as is: index, pre,
//   post and options as JSON text, mtime as a date. That table has no
//   reindex_active column until the first updateBucket adds it (for every
//   bucket, NULL); only an updateBucket with a version and without
//   no_reindex fills it ({version: [added fields]}), and reindexObjects
//   sets it to {} once done. The npm client drops a NULL, so a bucket that
//   never had such an update has no `reindex_active` at all. updateBucket
//   leaves mtime alone.
// - Index columns come from the value's top-level fields only (a missing
//   field or null is NULL); a string column holds `value + ''` (so an array
//   is "a,b"), a number column parseFloat (NaN is NULL), a boolean column
//   only true/false (anything else fails the put with InvalidIndexTypeError).
// - A returned value is the stored JSON with the index columns laid over it
//   (rowToObject): a NULL column removes the field (unless it is null), an
//   array is kept, anything else is replaced by the column's value. Fields
//   being reindexed are left alone.
// - _etag is CRC-32 of the stored JSON text, as 8 upper-case hex digits
//   (the old `crc` module: one step per UTF-16 unit, its low byte). A put on
//   an existing key keeps _id (a new one only with the bucket option
//   trackModification); _rver becomes the bucket version if the bucket's
//   reindex_active is not NULL, else stays as it was (NULL for a new row).
// - reindexObjects rewrites up to `count` rows with _rver NULL or below the
//   bucket version: index columns, _rver, and the value as returned (see
//   above); not _etag or _mtime.
// - Filters: the clauses on indexed fields (and _id/_key/_etag/_mtime/
//   _txn_snap) select rows by their *index columns* ("SQL"), sort, count,
//   limit and offset apply, and then the whole filter is checked against
//   the returned value. A filter with no usable clause is
//   InvalidQueryError; an `and` with none, or an `or` with an unusable
//   branch, NotIndexedError. requireIndexes / requireOnlineReindexing make
//   a filter on an unindexed or reindexing field NotIndexedError.
// - _mtime is Date.now() of each put (each put of a batch on its own),
//   reindexObjects leaves it alone; filters compare it as a number. A sort
//   is an ORDER BY on the attributes given and nothing else, so PostgreSQL
//   returns rows tied on them (many rows share one _mtime) in no particular
//   order; this fake returns them in last-write order, or in the reverse
//   with `tieOrder = 'reverse'` (for tests of clients that must not depend
//   on it).
//
// Indexes, so that costs have PostgreSQL's shape (the work of a find grows
// with the rows its indexed clauses match, not with the bucket): each
// bucket's rows (RowTable) keep, for `_id`, `_mtime` and each index field,
// the rows with a non-NULL column sorted by it, updated by every write (and
// by a test setting a row directly). A find takes the rows they give for an
// equality on `_key` or an index field, a `>=`/`<=` range on `_id`,
// `_mtime` or an index field, or a presence of an index field; an `and`
// its narrowest such branch, an `or` the union when every branch has one;
// anything else (a `not`, a substring, `_etag`) scans every row. Those rows
// then go through exactly the steps above in the scan's order (last-write
// order), so results, `_count`, sort and tie order, errors and the reindex
// behaviour are those of a scan (`useIndexes = false` scans, for tests
// comparing both; `rowsVisited` counts rows checked). As in Moray, whose
// `_count` comes from a query of its own (count(1) OVER () over the
// matching rows, skipped only with no_count), every row the indexed part
// matches is visited, also with a sort and a limit (and here with no_count
// too; SAPI never sends it); a sort on
// `_id` or `_key` skips ordering them by write first. A unique index is
// checked with a lookup; a write transaction keeps its changes aside and
// applies them at commit (one that fails changes nothing). reindexObjects
// walks the rows in _id order to the first `count` stale ones, and counts
// the stale ones left by a scan (Moray counts them through its _rver index).
//
// During a reindex (bucket updated, reindexObjects not done) this fake by
// default uses the partial new index columns in filters, so rows not yet
// reindexed are invisible to filters on the new fields (an old Moray's
// behaviour, the worst case for clients). With `excludeReindexingFields`
// it does what moray-server 2.x does instead: a field being reindexed is
// left out of the SQL (checked only against the value), so a filter on it
// alone is InvalidQueryError.
//
// Failure modes: stop()/start() (connections dropped, then refused; back on
// the same port), latencyMs / rpcLatencyMs (slow replies), failNext(rpc,
// errorName) (a Moray error reply), block(rpc) (hold requests until
// released).

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
    /** Bucket version the row was last indexed at (null: never, as Moray's NULL). */
    _rver: number | null;
    /** Index column values as of the last write or reindex (a missing key is NULL). */
    cols: Record<string, unknown>;
    /** Last-write order (an unsorted scan returns rows in this order, like a PG heap). */
    seq: number;
}

export interface FakeBucket {
    name: string;
    index: Record<string, FakeIndexDef>;
    options: { version: number } & Record<string, unknown>;
    /** Creation time (updateBucket does not change it). */
    mtime: Date;
    /**
     * buckets_config.reindex_active: null (SQL NULL) until an updateBucket
     * with a version and without no_reindex; {} once reindexObjects is done.
     */
    reindexActive: Record<string, string[]> | null;
    rows: RowTable;
    nextId: number;
}

/** What a transaction changed in one bucket (null: deleted), in write order; the bucket's rows are untouched until commit. */
interface TxBucket {
    bucket: FakeBucket;
    changes: Map<string, FakeRow | null>;
    nextId: number;
}

export interface FakeMorayState {
    buckets: Map<string, FakeBucket>;
    /** Whether buckets_config has its reindex_active column (the first updateBucket adds it). */
    reindexColumn: boolean;
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
const INTERNAL_FIELDS = ['_id', '_key', '_etag', '_mtime', '_txn_snap'];
const NUMERIC_INTERNAL = ['_id', '_mtime', '_txn_snap'];
/** The options moray-server says it handles (sendHandledOptions). */
const HANDLED_FIND_OPTIONS = [
    'req_id',
    'limit',
    'offset',
    'sort',
    'noLimit',
    'no_count',
    'sql_only',
    'noBucketCache',
    'timeout',
    'requireOnlineReindexing',
    'requireIndexes',
];
const HANDLED_GET_OPTIONS = ['noBucketCache', 'noCache', 'req_id', 'requireOnlineReindexing', 'timeout'];

const CRC32_TABLE = ((): Uint32Array => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) {
            c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        }
        table[n] = c >>> 0;
    }
    return table;
})();

/**
 * Moray's etag: CRC-32 of the JSON text as the `crc` 0.x module computes it
 * (one step per UTF-16 code unit, using its low byte), 8 upper-case hex digits.
 */
export function morayEtag(json: string): string {
    let crc = 0xffffffff;
    for (let i = 0; i < json.length; i++) {
        crc = (CRC32_TABLE[(crc ^ json.charCodeAt(i)) & 0xff] as number) ^ (crc >>> 8);
    }
    return ((crc ^ 0xffffffff) >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

/** `v + ''`, as Moray makes text of a value: an object is "[object Object]", an array "a,b". */
function asText(v: unknown): string {
    return (v as { toString(): string }).toString();
}

/** The index column for a top-level value (null: NULL), as Moray's indexObject. */
function indexValue(field: string, v: unknown, type: string): unknown {
    if (v === undefined || v === null) {
        return null;
    }
    switch (type) {
        case 'number': {
            const n = typeof v === 'number' ? v : Number.parseFloat(asText(v));
            return Number.isNaN(n) ? null : n;
        }
        case 'boolean': {
            const s = asText(v).toUpperCase();
            if (s !== 'TRUE' && s !== 'FALSE') {
                throw new MorayError('InvalidIndexTypeError', `index(${field}) is of type ${type}`);
            }
            return s === 'TRUE';
        }
        default:
            return asText(v);
    }
}

function indexRow(index: Record<string, FakeIndexDef>, value: Record<string, unknown>): Record<string, unknown> {
    const cols: Record<string, unknown> = {};
    for (const [field, def] of Object.entries(index)) {
        cols[field] = indexValue(field, value[field], def.type);
    }
    return cols;
}

/** Fields being reindexed (reindex_active, all versions). */
function reindexingFields(b: FakeBucket): Set<string> {
    return new Set(Object.values(b.reindexActive ?? {}).flat());
}

/** The value as Moray returns it: the stored JSON with the index columns laid over it. */
function rowValue(b: FakeBucket, row: FakeRow, ignore: Set<string>): Record<string, unknown> {
    const value = JSON.parse(row.json) as Record<string, unknown>;
    for (const k of Object.keys(b.index)) {
        if (ignore.has(k)) {
            continue;
        }
        const col = row.cols[k] ?? null;
        if (col === null) {
            if (value[k] !== null) {
                delete value[k];
            }
        } else if (!Array.isArray(value[k])) {
            value[k] = col;
        }
    }
    return value;
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

// ---- the rows of a bucket, and their indexes

/** Where one row sorts in an ordered index (by this, then _id, then key). */
type OrderKey = (row: FakeRow) => unknown;

/** One ordered index: the rows with a non-NULL value, sorted by it (then by _id and key). */
interface Ordered {
    value: OrderKey;
    rows: FakeRow[];
    /** Values of more than one type (a field whose type changed): no consistent order, not used. */
    mixed: boolean;
}

function orderCmp(o: Ordered, a: FakeRow, b: FakeRow): number {
    const d = cmp(o.value(a), o.value(b));
    if (d !== 0) {
        return d;
    }
    if (a._id !== b._id) {
        return a._id - b._id;
    }
    return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** The first position in `o` whose row sorts at or after `row`. */
function lowerBound(o: Ordered, row: FakeRow): number {
    let lo = 0;
    let hi = o.rows.length;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (orderCmp(o, o.rows[mid] as FakeRow, row) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/** The first position in `o` whose value is above `v` (`above`), or at or above it. */
function valueBound(o: Ordered, v: unknown, above: boolean): number {
    let lo = 0;
    let hi = o.rows.length;
    while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const d = cmp(o.value(o.rows[mid] as FakeRow), v);
        if (d < 0 || (above && d === 0)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

function orderedAdd(o: Ordered, row: FakeRow): void {
    const v = o.value(row);
    if (v === null || v === undefined) {
        return;
    }
    const first = o.rows[0];
    if (first !== undefined && typeof o.value(first) !== typeof v) {
        o.mixed = true;
    }
    const last = o.rows[o.rows.length - 1];
    if (last === undefined || orderCmp(o, last, row) < 0) {
        o.rows.push(row);
    } else {
        o.rows.splice(lowerBound(o, row), 0, row);
    }
}

function orderedRemove(o: Ordered, row: FakeRow): void {
    const v = o.value(row);
    if (v === null || v === undefined) {
        return;
    }
    let i = o.mixed ? -1 : lowerBound(o, row);
    if (i < 0 || o.rows[i] !== row) {
        // Not where it sorts (values of mixed types): look for it.
        i = o.rows.indexOf(row);
    }
    if (i >= 0) {
        o.rows.splice(i, 1);
    }
}

/**
 * The rows of one bucket by key, in last-write order (what an unsorted
 * scan returns, like a PostgreSQL heap), with the bucket's indexes kept up
 * to date by every set and delete (tests may set rows directly): for
 * `_id`, `_mtime` and each index field, the rows with a non-NULL value in
 * that column, sorted by it, as PostgreSQL's B-tree indexes keep them.
 */
export class RowTable extends Map<string, FakeRow> {
    private ordered = new Map<string, Ordered>();

    constructor(fields: string[] = []) {
        super();
        this.setFields(fields);
    }

    /** Index these fields (and _id, _mtime), built again from the rows. */
    setFields(fields: string[]): void {
        this.ordered = new Map<string, Ordered>([
            ['_id', { value: (r) => r._id, rows: [], mixed: false }],
            ['_mtime', { value: (r) => r._mtime, rows: [], mixed: false }],
            ...fields.map((f): [string, Ordered] => [f, { value: (r) => r.cols[f] ?? null, rows: [], mixed: false }]),
        ]);
        for (const row of super.values()) {
            for (const o of this.ordered.values()) {
                orderedAdd(o, row);
            }
        }
    }

    override set(key: string, row: FakeRow): this {
        const prev = super.get(key);
        super.set(key, row);
        this.reindexRow(prev, row);
        return this;
    }

    override delete(key: string): boolean {
        const prev = super.get(key);
        if (prev === undefined) {
            return false;
        }
        super.delete(key);
        this.reindexRow(prev, undefined);
        return true;
    }

    override clear(): void {
        super.clear();
        for (const o of this.ordered.values()) {
            o.rows = [];
            o.mixed = false;
        }
    }

    /** Set `key` to `row` and move it to the end of the last-write order (a write). */
    write(key: string, row: FakeRow): void {
        const prev = super.get(key);
        super.delete(key);
        super.set(key, row);
        this.reindexRow(prev, row);
    }

    private reindexRow(prev: FakeRow | undefined, row: FakeRow | undefined): void {
        for (const o of this.ordered.values()) {
            if (prev !== undefined && row !== undefined && !o.mixed) {
                const v = o.value(row);
                if (v !== null && v !== undefined && orderCmp(o, prev, row) === 0) {
                    // Same place in this index: the row object is replaced where it is.
                    const i = lowerBound(o, prev);
                    if (o.rows[i] === prev) {
                        o.rows[i] = row;
                        continue;
                    }
                }
            }
            if (prev !== undefined) {
                orderedRemove(o, prev);
            }
            if (row !== undefined) {
                orderedAdd(o, row);
            }
        }
    }

    /**
     * The rows whose `column` (`_id`, `_mtime` or an index field) is within
     * [lo, hi] (either end may be left open), in its order; null when that
     * column has no usable index.
     */
    range(column: string, lo: unknown, hi: unknown): FakeRow[] | null {
        const o = this.ordered.get(column);
        if (!o || o.mixed) {
            return null;
        }
        const from = lo === undefined ? 0 : valueBound(o, lo, false);
        const to = hi === undefined ? o.rows.length : valueBound(o, hi, true);
        return from < to ? o.rows.slice(from, to) : [];
    }

    /** Every row in _id order (a copy). */
    inIdOrder(): FakeRow[] {
        return this.range('_id', undefined, undefined) ?? [...super.values()].sort((x, y) => x._id - y._id);
    }

    /** Every row in last-write order (seq ascending). */
    inWriteOrder(): FakeRow[] {
        const rows = [...super.values()];
        for (let i = 1; i < rows.length; i++) {
            if ((rows[i] as FakeRow).seq < (rows[i - 1] as FakeRow).seq) {
                // Set directly out of order (a test's doing): sort.
                return rows.sort((x, y) => x.seq - y.seq);
            }
        }
        return rows;
    }
}

// ---- filters

type Sql = 'T' | 'F' | 'U' | 'N'; // true, false, SQL unknown (NULL), no clause (unindexed)

/** What a filter may use as SQL: the bucket and the index fields left out of it. */
interface QueryCtx {
    bucket: FakeBucket;
    excluded: Set<string>;
}

function isInternal(attr: string): boolean {
    return INTERNAL_FIELDS.includes(attr);
}

function isIndexed(q: QueryCtx, attr: string): boolean {
    return attr in q.bucket.index && !q.excluded.has(attr);
}

function column(row: FakeRow, attr: string): unknown {
    switch (attr) {
        case '_id':
            return row._id;
        case '_key':
            return row.key;
        case '_etag':
            return row._etag;
        case '_mtime':
            return row._mtime;
        case '_txn_snap':
            return null;
        default:
            return row.cols[attr] ?? null;
    }
}

function attrType(bucket: FakeBucket, attr: string): string {
    if (NUMERIC_INTERNAL.includes(attr)) {
        return 'number';
    }
    return bucket.index[attr]?.type ?? 'string';
}

function coerce(n: LdapNode, v: unknown, type: string): unknown {
    if (type === 'number') {
        return Number.parseFloat(String(v));
    }
    if (type === 'boolean') {
        const s = String(v).toUpperCase();
        if (s !== 'TRUE' && s !== 'FALSE') {
            throw new MorayError('InvalidQueryError', `invalid boolean ${JSON.stringify(v)} in (${n.attribute}=...)`);
        }
        return s === 'TRUE';
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

function anyOf(v: unknown, test: (v: unknown) => boolean): boolean {
    return Array.isArray(v) ? v.some(test) : test(v);
}

/**
 * Whether `n` gives Moray any SQL clause (compileQuery): an `and` needs one
 * branch with a clause, an `or` needs all; NotIndexedError otherwise.
 */
function hasClause(q: QueryCtx, n: LdapNode, filter: string): boolean {
    const attr = n.attribute ?? '';
    switch (n.type) {
        case 'and': {
            const parts = (n.filters ?? []).map((f) => hasClause(q, f, filter));
            if (!parts.includes(true)) {
                throw new MorayError('NotIndexedError', `${q.bucket.name} does not have indexes that support ${filter}`);
            }
            return true;
        }
        case 'or': {
            const parts = (n.filters ?? []).map((f) => hasClause(q, f, filter));
            if (parts.length === 0 || parts.includes(false)) {
                throw new MorayError('NotIndexedError', `${q.bucket.name} does not have indexes that support ${filter}`);
            }
            return true;
        }
        case 'not':
            return hasClause(q, n.filter as LdapNode, filter);
        case 'present':
            return isIndexed(q, attr);
        case 'equal':
        case 'ge':
        case 'le':
        case 'substring':
            return isInternal(attr) || isIndexed(q, attr);
        default:
            return false;
    }
}

/** The "SQL" part: clauses on indexed/internal fields, over index columns. */
function sqlEval(q: QueryCtx, row: FakeRow, n: LdapNode): Sql {
    const attr = n.attribute ?? '';
    switch (n.type) {
        case 'and': {
            const parts = (n.filters ?? []).map((f) => sqlEval(q, row, f)).filter((r) => r !== 'N');
            if (parts.length === 0) {
                return 'N';
            }
            return parts.includes('F') ? 'F' : parts.includes('U') ? 'U' : 'T';
        }
        case 'or': {
            const parts = (n.filters ?? []).map((f) => sqlEval(q, row, f));
            return parts.includes('T') ? 'T' : parts.includes('U') ? 'U' : 'F';
        }
        case 'not': {
            const r = sqlEval(q, row, n.filter as LdapNode);
            return r === 'T' ? 'F' : r === 'F' ? 'T' : r;
        }
        case 'present':
            if (!isIndexed(q, attr)) {
                return 'N';
            }
            return column(row, attr) === null ? 'F' : 'T';
        case 'equal':
        case 'ge':
        case 'le':
        case 'substring': {
            if (!isInternal(attr) && !isIndexed(q, attr)) {
                return 'N';
            }
            const col = column(row, attr);
            if (col === null) {
                return 'U';
            }
            const type = attrType(q.bucket, attr);
            let test: (v: unknown) => boolean;
            if (n.type === 'substring') {
                const re = globRegExp(n);
                test = (v) => re.test(String(v));
            } else {
                const want = coerce(n, n.value, type);
                test = n.type === 'equal' ? (v) => v === want : n.type === 'ge' ? (v) => cmp(v, want) >= 0 : (v) => cmp(v, want) <= 0;
            }
            return test(col) ? 'T' : 'F';
        }
        default:
            return 'N';
    }
}

/**
 * The rows the indexes give for the SQL part of `n` (a superset of those
 * it selects; null: every row, a sequential scan), as PostgreSQL's planner
 * would use them: an equality on `_key` or an indexed field, a range
 * (`>=`, `<=`) on `_id`, `_mtime` or an indexed field, a presence of an
 * indexed field; an `and` takes its narrowest branch, an `or` the union
 * of its branches when each has one. Anything else (not, substrings,
 * `_etag`) scans.
 */
function candidates(q: QueryCtx, n: LdapNode): FakeRow[] | null {
    const attr = n.attribute ?? '';
    const rows = q.bucket.rows;
    switch (n.type) {
        case 'and': {
            let best: FakeRow[] | null = null;
            for (const f of n.filters ?? []) {
                const c = candidates(q, f);
                if (c !== null && (best === null || c.length < best.length)) {
                    best = c;
                }
            }
            return best;
        }
        case 'or': {
            const union = new Set<FakeRow>();
            for (const f of n.filters ?? []) {
                const c = candidates(q, f);
                if (c === null) {
                    return null;
                }
                c.forEach((r) => union.add(r));
            }
            return [...union];
        }
        case 'present':
            return isIndexed(q, attr) ? rows.range(attr, undefined, undefined) : null;
        case 'equal':
        case 'ge':
        case 'le': {
            if (attr === '_key') {
                const row = n.type === 'equal' ? rows.get(String(n.value)) : undefined;
                return n.type !== 'equal' ? null : row ? [row] : [];
            }
            if (attr !== '_id' && attr !== '_mtime' && !isIndexed(q, attr)) {
                return null;
            }
            let want: unknown;
            try {
                want = coerce(n, n.value, attrType(q.bucket, attr));
            } catch {
                // A bad value: the SQL part's evaluation fails the query (if any row is visited), as it did before.
                return null;
            }
            if (typeof want === 'number' && Number.isNaN(want)) {
                return [];
            }
            return rows.range(attr, n.type === 'le' ? undefined : want, n.type === 'ge' ? undefined : want);
        }
        default:
            return null;
    }
}

/** The post-filter: the whole filter against the returned value (plus _id, _etag, ...). */
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
    const type = isInternal(attr) ? attrType(bucket, attr) : bucket.index[attr]?.type;
    const want = type === 'number' ? Number.parseFloat(String(n.value)) : n.value;
    switch (n.type) {
        case 'equal':
            return anyOf(v, (x) => x === want || (type === 'boolean' && String(x).toLowerCase() === String(want).toLowerCase()));
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
    /**
     * Leave index fields that are being reindexed out of the SQL part of
     * filters, as moray-server 2.x does (default: use their partial index
     * columns, the worst case for clients).
     */
    excludeReindexingFields?: boolean;
}

export class FakeMoray {
    readonly host = '127.0.0.1';
    port = 0;
    /** Delay before every reply. */
    latencyMs = 0;
    /** Extra delay per RPC name. */
    rpcLatencyMs: Record<string, number> = {};
    readonly state: FakeMorayState = { buckets: new Map(), reindexColumn: false };
    /** See FakeMorayOptions.excludeReindexingFields. */
    excludeReindexingFields: boolean;
    /** The order of rows a sort leaves tied, and of an unsorted scan (PostgreSQL promises none). */
    tieOrder: 'write' | 'reverse' = 'write';
    /** Every request received, in order (unless `recordRequests` is false). */
    readonly requests: FakeRequest[] = [];
    /** Keep `requests` (a standalone server, which nobody asks, does not). */
    recordRequests = true;
    /** Use the indexes to select rows; false: scan every row, for tests that compare both. */
    useIndexes = true;
    /** Rows findObjects has checked against a filter's SQL part so far (what the indexes keep small). */
    rowsVisited = 0;

    private readonly log: bunyan;
    private server: net.Server | null = null;
    private fastServer: FastServerLike | null = null;
    private readonly sockets = new Set<net.Socket>();
    private readonly failures: { rpc: string; name: string; message: string; count: number }[] = [];
    private readonly blocks = new Map<string, { promise: Promise<void>; release: () => void; when: (args: unknown[]) => boolean }>();
    private readonly holding = new Map<string, number>();
    private writeSeq = 0;

    constructor(opts: FakeMorayOptions = {}) {
        this.port = opts.port ?? 0;
        this.excludeReindexingFields = opts.excludeReindexingFields ?? false;
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
        this.state.reindexColumn = false;
        this.failures.length = 0;
        this.requests.length = 0;
    }

    // ---- dispatch

    private dispatch(name: string, rpc: FastRpc, fn: (args: unknown[], write: (o: unknown) => void) => void): void {
        const args = rpc.argv();
        if (this.recordRequests) {
            this.requests.push({ method: name, args });
        }
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

    /** The buckets_config row, as getBucket/listBuckets send it. */
    private bucketRecord(b: FakeBucket): Record<string, unknown> {
        const rec: Record<string, unknown> = {
            name: b.name,
            index: JSON.stringify(b.index),
            pre: '[]',
            post: '[]',
            options: JSON.stringify(b.options),
            mtime: b.mtime.toISOString(),
        };
        if (this.state.reindexColumn) {
            rec.reindex_active = b.reindexActive === null ? null : JSON.stringify(b.reindexActive);
        }
        return rec;
    }

    private objectRecord(b: FakeBucket, row: FakeRow, ignore = reindexingFields(b)): Record<string, unknown> {
        return {
            bucket: b.name,
            key: row.key,
            value: rowValue(b, row, ignore),
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
                if ((opts as { internalOpts?: { sendHandledOptions?: boolean } })?.internalOpts?.sendHandledOptions === true) {
                    write({ _handledOptions: HANDLED_GET_OPTIONS });
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
            reindexActive: null,
            rows: new RowTable(Object.keys(index)),
            nextId: 1,
        });
    }

    private updateBucket(name: unknown, cfg: unknown, opts: unknown): void {
        const c = (cfg ?? {}) as { index?: unknown; options?: { version?: unknown } };
        const index = validateIndex(c.index);
        const b = this.bucket(name);
        const v = b.options.version;
        const v2 = Number(c.options?.version ?? 0) || 0;
        if (v !== 0 && v >= v2) {
            throw new MorayError('BucketVersionError', `${b.name}: version ${v2} is not newer than ${v}`, {
                bucket: b.name,
            });
        }
        // The first updateBucket adds the reindex_active column (NULL for every bucket).
        this.state.reindexColumn = true;
        const added = Object.keys(index).filter((k) => !(k in b.index));
        const dropped = Object.keys(b.index).filter((k) => !(k in index));
        if (v2 !== 0 && !(opts as { no_reindex?: boolean })?.no_reindex) {
            const active = b.reindexActive ?? {};
            const cur = active[String(v2)] ?? [];
            b.reindexActive = { ...active, [String(v2)]: [...cur, ...added.filter((f) => !cur.includes(f))] };
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
        b.rows.setFields(Object.keys(index));
        b.options = { ...(c.options ?? {}), version: v2 };
    }

    private reindex(name: unknown, count: unknown, opts: unknown): Record<string, number> {
        const b = this.bucket(name);
        const n = Number(count);
        if (!(n >= 1)) {
            throw new MorayError('InvalidArgumentError', `count ${String(count)} < 1`);
        }
        if (Object.keys(b.reindexActive ?? {}).length === 0) {
            return { processed: 0 };
        }
        const version = b.options.version;
        const stale = (r: FakeRow): boolean => r._rver === null || r._rver < version;
        // The first `count` stale rows in _id order (Moray's SELECT has no
        // ORDER BY; _id order makes this fake repeatable), without sorting
        // them all at every call.
        const todo: FakeRow[] = [];
        for (const row of b.rows.inIdOrder()) {
            if (todo.length >= n) {
                break;
            }
            if (stale(row)) {
                todo.push(row);
            }
        }
        // Each row is rewritten from its value as returned (the fields being
        // reindexed not laid over); _etag and _mtime stay.
        const ignore = reindexingFields(b);
        for (const row of todo) {
            const value = rowValue(b, row, ignore);
            b.rows.set(row.key, { ...row, json: JSON.stringify(value), cols: indexRow(b.index, value), _rver: version });
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

    // ---- objects (within a transaction: the changes to each touched bucket, applied at commit)

    private txn(): Map<string, TxBucket> {
        return new Map();
    }

    private txBucket(tx: Map<string, TxBucket>, b: FakeBucket): TxBucket {
        let t = tx.get(b.name);
        if (!t) {
            t = { bucket: b, changes: new Map(), nextId: b.nextId };
            tx.set(b.name, t);
        }
        return t;
    }

    /** The row `key` as this transaction sees it. */
    private txRow(t: TxBucket, key: string): FakeRow | undefined {
        return t.changes.has(key) ? (t.changes.get(key) ?? undefined) : t.bucket.rows.get(key);
    }

    /** The key of another row holding `value` in unique index `field`, as this transaction sees the rows. */
    private uniqueOwner(t: TxBucket, field: string, value: unknown, key: string): string | undefined {
        for (const [k, row] of t.changes) {
            if (k !== key && row !== null && row.cols[field] === value) {
                return k;
            }
        }
        // An index lookup, as PostgreSQL's unique index (a scan if that index is unusable).
        const holders = t.bucket.rows.range(field, value, value) ?? [...t.bucket.rows.values()].filter((r) => r.cols[field] === value);
        return holders.find((r) => r.key !== key && !t.changes.has(r.key))?.key;
    }

    private commit(tx: Map<string, TxBucket>): void {
        for (const [name, t] of tx) {
            const b = this.state.buckets.get(name);
            if (b !== t.bucket) {
                continue;
            }
            for (const [key, row] of t.changes) {
                if (row === null) {
                    b.rows.delete(key);
                } else {
                    b.rows.write(key, row);
                }
            }
            b.nextId = t.nextId;
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

    private put(tx: Map<string, TxBucket>, bucket: unknown, key: unknown, value: unknown, opts: unknown): string {
        const b = this.bucket(bucket);
        if (typeof key !== 'string' || !value || typeof value !== 'object' || Array.isArray(value)) {
            throw new MorayError('InvalidArgumentError', 'key must be a string and value an object');
        }
        const t = this.txBucket(tx, b);
        const prev = this.txRow(t, key);
        this.checkEtag(b.name, key, opts, prev);
        const v = value as Record<string, unknown>;
        const cols = indexRow(b.index, v);
        for (const [field, def] of Object.entries(b.index)) {
            const c = cols[field];
            if (!def.unique || c === null) {
                continue;
            }
            if (this.uniqueOwner(t, field, c, key) !== undefined) {
                throw new MorayError('UniqueAttributeError', `${field} ${JSON.stringify(c)} already exists`, {
                    bucket: b.name,
                    key,
                });
            }
        }
        const json = JSON.stringify(v);
        const row: FakeRow = {
            key,
            json,
            // An update keeps _id; trackModification gives it a new one (_id=DEFAULT).
            _id: prev && b.options.trackModification !== true ? prev._id : t.nextId++,
            _etag: morayEtag(json),
            _mtime: Date.now(),
            // _rver is set only while the bucket has reindex state (even {}).
            _rver: b.reindexActive !== null ? b.options.version : (prev?._rver ?? null),
            cols,
            seq: ++this.writeSeq,
        };
        // Moved to the end of the changes: they are applied in write order.
        t.changes.delete(key);
        t.changes.set(key, row);
        return row._etag;
    }

    private del(tx: Map<string, TxBucket>, bucket: unknown, key: unknown, opts: unknown): void {
        const b = this.bucket(bucket);
        const t = this.txBucket(tx, b);
        const prev = this.txRow(t, String(key));
        if (!prev) {
            throw new MorayError('ObjectNotFoundError', `${b.name}::${String(key)} does not exist`, {
                bucket: b.name,
                key,
            });
        }
        this.checkEtag(b.name, String(key), opts, prev);
        t.changes.delete(String(key));
        t.changes.set(String(key), null);
    }

    private find(bucket: unknown, filter: unknown, opts: unknown, write: (o: unknown) => void): void {
        const o = (opts ?? {}) as {
            limit?: number;
            offset?: number;
            noLimit?: boolean;
            no_count?: boolean;
            sort?: SortSpec | SortSpec[];
            requireIndexes?: boolean;
            requireOnlineReindexing?: boolean;
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
        const b = this.bucket(bucket);
        const reindexing = reindexingFields(b);
        if (o.requireIndexes === true || o.requireOnlineReindexing === true) {
            const unindexed = new Set<string>();
            const walk = (n: LdapNode): void => {
                if (n.filters) {
                    n.filters.forEach(walk);
                } else if (n.filter) {
                    walk(n.filter);
                } else if (n.attribute && !isInternal(n.attribute) && (!(n.attribute in b.index) || reindexing.has(n.attribute))) {
                    unindexed.add(n.attribute);
                }
            };
            walk(f);
            if (unindexed.size > 0) {
                throw new MorayError('NotIndexedError', `${b.name} does not have usable indexes on ${[...unindexed].join(', ')}`, {
                    bucket: b.name,
                    filter,
                    unindexedFields: [...unindexed].filter((a) => !(a in b.index)),
                    reindexingFields: [...unindexed].filter((a) => reindexing.has(a)),
                });
            }
        }
        if (o.internalOpts?.sendHandledOptions === true) {
            write({ _handledOptions: HANDLED_FIND_OPTIONS });
        }
        const q: QueryCtx = { bucket: b, excluded: this.excludeReindexingFields ? reindexing : new Set() };
        if (!hasClause(q, f, filter)) {
            throw new MorayError('InvalidQueryError', `invalid query: ${filter}`);
        }
        const sorts = o.sort === undefined ? [] : Array.isArray(o.sort) ? o.sort : [o.sort];
        // The rows the indexes give (every row otherwise), in the order a
        // scan returns them: last-write order (or its reverse), which a sort
        // keeps among rows it leaves tied. A sort on _id or _key leaves none.
        const found = this.useIndexes ? candidates(q, f) : null;
        const rows = found ?? b.rows.inWriteOrder();
        const untied = ['_id', '_key'].includes(sorts[0]?.attribute ?? '');
        if (found !== null && !untied) {
            rows.sort((x, y) => x.seq - y.seq);
        }
        if (this.tieOrder === 'reverse' && !untied) {
            rows.reverse();
        }
        this.rowsVisited += rows.length;
        const selected = rows.filter((row) => sqlEval(q, row, f) === 'T');
        if (sorts.length > 0) {
            selected.sort((x, y) => {
                for (const s of sorts) {
                    if (!s.attribute) {
                        continue;
                    }
                    const desc = String(s.order ?? 'ASC').toUpperCase() === 'DESC';
                    const a = column(x, s.attribute);
                    const c = column(y, s.attribute);
                    let d: number;
                    if (a === null || c === null) {
                        // NULLs sort as larger than any value (last for ASC, first for DESC), as in PostgreSQL.
                        d = a === c ? 0 : a === null ? 1 : -1;
                        d = desc ? -d : d;
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
        const limit = o.limit ? o.limit : o.noLimit ? Infinity : 1000;
        for (const row of selected.slice(offset, offset + limit)) {
            const rec = this.objectRecord(b, row, reindexing);
            const check = {
                ...(rec.value as Record<string, unknown>),
                _id: row._id,
                _etag: row._etag,
                _mtime: row._mtime,
                _key: row.key,
            };
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
