// The one storage interface every backend (SQLite, Moray) implements.
//
// Objects are plain JSON values keyed by `uuid`, kept in named buckets.
// Index fields are top-level fields of the stored value (see buckets.ts);
// the model is responsible for putting derived index fields there.

import type { BucketName } from './buckets.js';
import type { ChangeMirror, ChangeSource, RowObserver } from './changes.js';

export type JsonObject = { [key: string]: unknown };

/**
 * SAPI's mode: proto records only, full deploys. It is kept in the store,
 * and on Moray the store setup decides it (stor/index.ts).
 */
export type Mode = 'proto' | 'full';

/** The meta key (getMeta/setMeta) the mode is kept under, in every backend. */
export const MODE_META_KEY = 'mode';

/** A stored object and the opaque version tag of that exact value. */
export interface Stored<T extends JsonObject = JsonObject> {
    value: T;
    etag: string;
}

/**
 * A typed filter tree, never a string: each backend turns it into its own
 * query language (parameterised SQL, ldap-filter objects).
 */
export type Filter = { eq: { field: string; value: string } } | { in: { field: string; values: string[] } } | { and: Filter[] } | { all: true };

export const ALL: Filter = { all: true };

export function eq(field: string, value: string): Filter {
    return { eq: { field, value } };
}

export function oneOf(field: string, values: string[]): Filter {
    return { in: { field, values } };
}

export function and(...filters: Filter[]): Filter {
    const parts = filters.filter((f) => !('all' in f));
    if (parts.length === 0) {
        return ALL;
    }
    if (parts.length === 1) {
        return parts[0] as Filter;
    }
    return { and: parts };
}

/**
 * Paging. Results come in `uuid` order when a page is asked for; `marker`
 * is the uuid of the last item of the previous page (exclusive).
 */
export interface PageRequest {
    limit: number;
    marker?: string | undefined;
}

export interface Page<T extends JsonObject = JsonObject> {
    items: Stored<T>[];
    /** Total number of objects matching the filter (not just this page). */
    total: number;
}

/** Every match as JSON text, chunk by chunk (see JsonLists.streamJson). */
export interface JsonStream {
    total: number;
    chunks: AsyncIterable<string[]>;
}

/** Matches as JSON text (see JsonLists.findJson). */
export interface JsonPage {
    json: string[];
    total: number;
}

/**
 * A capability some backends offer besides Store (the embedded store
 * does): the matches of find()/iterate() as JSON text, with the top-level
 * keys `omit` removed, ready for the socket (StoreCapabilities.jsonLists:
 * absent when the backend serving now lacks it; callers then use
 * find()/iterate()).
 */
export interface JsonLists {
    /** find(), each match as JSON text without the keys `omit`. */
    findJson(bucket: BucketName, filter: Filter, page: PageRequest | undefined, omit: readonly string[]): Promise<JsonPage>;
    /**
     * Every match, in iterate()'s order and chunks, as JSON text without
     * the keys `omit`, and their number: both from one reading of the
     * store (one decision where they come from).
     */
    streamJson(bucket: BucketName, filter: Filter, chunkSize: number, omit: readonly string[]): Promise<JsonStream>;
}

export interface PutOptions {
    /**
     * Conditional write. A string: the stored etag must equal it.
     * `null`: the object must not exist yet. Absent: unconditional.
     */
    etag?: string | null | undefined;
}

export interface DelOptions {
    etag?: string | undefined;
}

export type BatchOp =
    | { op: 'put'; bucket: BucketName; value: JsonObject; etag?: string | null | undefined }
    | { op: 'del'; bucket: BucketName; uuid: string; etag?: string | undefined };

/**
 * What a store can do besides Store, as it stands now (ask again for every
 * request: the backend behind a switching store changes). Each backend says
 * what it has; each decorator says what it keeps of its inner store's.
 */
export interface StoreCapabilities {
    /** The matches of lists as JSON text, ready for the socket (the embedded store). */
    jsonLists?: JsonLists;
    /** Change stamps, for GetConfig's change feed (Moray). */
    changeSource?: ChangeSource;
    /** Sees the rows the change feed reads (Moray: gives rows written by older SAPIs their index copies). */
    rowObserver?: RowObserver;
    /** Multi-DC: the master DC's store. */
    master?: Store;
    /** A local copy the change feed keeps current (Moray's local cache), which then answers lists. */
    changeMirror?: ChangeMirror;
    /**
     * Reads of one object's value (no etag: never for a conditional write)
     * from a copy the change feed keeps current, as of `asOf` (the feed's
     * clock: the start of the last poll the copy has applied; the caller
     * judges whether that is recent enough); null when the copy cannot
     * answer now (ask the store itself).
     */
    recentReads?: RecentReads;
}

/** See StoreCapabilities.recentReads. */
export interface RecentReads {
    get<T extends JsonObject>(bucket: BucketName, uuid: string): { value: T | null; asOf: number } | null;
}

export interface Store {
    /** Backend name reported by /ping (storType). */
    readonly name: string;

    /** What this store can do besides Store, now. */
    capabilities(): StoreCapabilities;

    /** Creates tables / buckets; safe to call again. */
    init(): Promise<void>;

    /** Health check: true when reads and writes can be served. */
    ping(): Promise<boolean>;

    get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null>;

    /** Writes `value` under `value.uuid`; returns the new etag. */
    put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>>;

    /** Deletes; throws NotFoundError when absent. */
    del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void>;

    /**
     * Without a page: every match, in creation order (then uuid).
     * With a page: at most `limit` matches with uuid > marker, in uuid order.
     */
    find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>>;

    /** Every match in creation order, in chunks, without holding them all. */
    iterate<T extends JsonObject>(bucket: BucketName, filter: Filter, chunkSize?: number): AsyncIterable<Stored<T>[]>;

    count(bucket: BucketName, filter: Filter): Promise<number>;

    /** All operations or none. */
    batch(ops: BatchOp[]): Promise<void>;

    /** Small service-level settings (mode, migration state). */
    getMeta(key: string): Promise<string | null>;
    setMeta(key: string, value: string): Promise<void>;

    close(): Promise<void>;
}
