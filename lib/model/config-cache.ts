// GetConfig's cache: each instance's config document, kept as its ETag and
// its JSON, so that config-agent's poll (If-None-Match with the tag it
// holds, nearly always answered 304) and an unchanged 200 cost a map lookup
// instead of four to six store reads, a merge and a hash.
//
// What keeps it exact. Every write this process makes to the instances,
// services, applications and manifests buckets goes through the store
// watch() returns (config-watch.ts; the composition root hands that store to
// every part of the service that writes), which reports it with noteWrite()
// once the write has settled, whether it succeeded or not. Each report
// advances a write counter, and:
//   - a write of an instance drops that instance's entry;
//   - a write of a service, application or manifest records the counter
//     against that object. An entry remembers the counter as it was when its
//     assembly began and the objects it was assembled from; it is stale once
//     one of those objects has a recorded write above that value. A write to
//     an application that a hundred thousand documents include thus costs
//     one map update, and each of those entries is found stale when next read.
// An assembly overtaken by a write to its instance or to one of its sources
// still answers its own request (which began before that write ended) but is
// not kept; a request joins an assembly already running for the same
// instance only if no write has been reported since that assembly began.
//
// Other writers. On the embedded store this process is the only writer: an
// entry stays valid until one of the writes above. On Moray, other SAPI
// processes (and SAPI 2.1.2) write the same buckets unseen, so, unless the
// change feed (below) vouches for it, nothing read from the store is
// answered from for SHARED_STORE_REVALIDATE_MS or more after the read began: a write acknowledged by any SAPI is in every answer
// that starts that long after it, deletes included. An entry carries the
// start of the oldest read it was assembled from; past the bound the next
// request assembles it again, from Moray, or from the local copy while Moray
// is unreachable, exactly as without this cache. A request joins an
// assembly already running only within the same bound.
//
// The change feed. On Moray one poller per process (lib/stor/moray/feed.ts)
// tells the cache every object of those buckets that anyone changed or
// deleted, a few times a second, through changed() (as noteWrite()), and
// after each successful poll, through polled(), that every change committed
// before that poll began has been told. While the last successful poll
// began less than the bound ago, an entry (or kept source) read after the
// feed's current chain began is answered from without reading Moray again,
// for up to fallbackMs after its read: a write acknowledged by any SAPI more
// than the bound ago has been told, and has dropped it. What the feed
// cannot see (a delete by a SAPI that writes no tombstones, such as SAPI
// 2.1.2 during an upgrade, or a write whose commit lags far behind its
// stamp) is in every answer that starts fallbackMs after it. When polls
// fail or stall, the rule above (the bound after each read) applies again
// at once.
//
// Sources on Moray. Services, applications and manifests change rarely and
// every document of a service is made of the same ones, so on Moray they
// are kept too (read once per bound, however many documents use them; a
// read under way is shared): an assembly then costs one Moray read, its
// instance's. A write of one of them through this process drops it at once,
// as it does the entries.
//
// The local copy. On Moray the store's local copy, which the change feed
// keeps current (stor/mirror.ts), answers an assembly's reads of the
// instance and of sources not kept, as of the feed's last poll applied to
// it, when the feed vouches for what was read from that poll on (the same
// rule as for entries; the entry's read time is then that poll's start).
// An object the copy lacks is read from Moray. A first GetConfig of an
// instance thus reads nothing from Moray.
//
// Bounds. At most maxEntries entries, the least recently used dropped first.
// The JSON of the most recently used entries is kept within maxBodyBytes; an
// entry without it still answers 304s and If-Match, and a 200 from it
// assembles again. Once more than MAX_RECORDED_WRITES objects have recorded
// writes, the cache and the record are emptied together.

import type { BucketName } from '../stor/buckets.js';
import type { ChangeSink } from '../stor/changes.js';
import type { JsonObject, Store } from '../stor/store.js';
import { assembleConfig, configEtag, storeReader, type ConfigSources, type SourceReader } from './config-doc.js';
import { WatchedStore, type WriteListener } from './config-watch.js';
import type { ConfigAnswer, ConfigAnswers, Ctx, ParentReader } from './context.js';
import { BUCKET_OF } from './objects.js';
import type { Application, Instance, Manifest, Service } from './types.js';

/** On a store other processes also write (Moray): how long an entry is answered from. */
export const SHARED_STORE_REVALIDATE_MS = 1000;
/** With a healthy change feed: how long an entry is answered from at most (what the feed cannot see is read again after this). */
export const FEED_FALLBACK_MS = 30_000;
/** Entries kept by default: every instance of a DC of 200,000 (an entry without its JSON is about 200 bytes). */
export const DEFAULT_MAX_ENTRIES = 200_000;
/** Documents' JSON kept by default, in bytes. */
export const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024;
/** Services, applications and manifests with a recorded write before the cache starts afresh. */
const MAX_RECORDED_WRITES = 100_000;

export interface ConfigCacheOptions {
    /** Other processes write the same store (Moray): entries are re-assembled after revalidateMs. */
    shared: boolean;
    maxEntries?: number;
    maxBodyBytes?: number;
    /** With `shared`, how long an entry is answered from (default SHARED_STORE_REVALIDATE_MS). */
    revalidateMs?: number;
    /** With `shared` and a healthy change feed, how long an entry is answered from (default FEED_FALLBACK_MS). */
    fallbackMs?: number;
    /** A monotonic clock in milliseconds (tests replace it). */
    now?: () => number;
}

/** The objects entries were assembled from; one object for every entry with the same ones. */
interface Sources {
    id: string;
    /** `<bucket>/<uuid>` of the service, the application and each manifest. */
    keys: string[];
    refs: number;
}

interface Entry {
    etag: string;
    /** The JSON answered with a 200; null when not kept (see maxBodyBytes). */
    body: Buffer | null;
    /** Its length. */
    bytes: number;
    sources: Sources;
    /** The write counter when its assembly began. */
    seq: number;
    /** The clock when the oldest read it was assembled from began. */
    at: number;
}

/** Assemblies of one instance under way, and the counter at the last write of it meanwhile. */
interface Running {
    count: number;
    lastWrite: number;
}

/** Sources kept at most (services, applications, manifests of a DC are far fewer). */
const MAX_KEPT_SOURCES = 10_000;

/** A source read from the store, kept on a shared store (see "Sources on Moray"). */
interface KeptSource {
    promise: Promise<unknown>;
    /** The clock when its read began. */
    at: number;
    /** The write counter then. */
    seq: number;
}

const INSTANCES: BucketName = BUCKET_OF.instance;
const WATCHED: ReadonlySet<string> = new Set<string>([BUCKET_OF.instance, BUCKET_OF.service, BUCKET_OF.application, BUCKET_OF.manifest]);

export class ConfigCache implements ConfigAnswers, ChangeSink, WriteListener {
    readonly shared: boolean;
    readonly maxEntries: number;
    readonly maxBodyBytes: number;
    private readonly revalidateMs: number;
    private readonly fallbackMs: number;
    private readonly clock: () => number;
    /** The start of the change feed's last successful poll, and of its chain; null: no feed. */
    private feedAt: number | null = null;
    private feedSince = Infinity;

    /** Entries by instance uuid, least recently used first. */
    private readonly entries = new Map<string, Entry>();
    /** The entries that hold their JSON, least recently used first. */
    private readonly bodies = new Map<string, Entry>();
    private bodyBytes = 0;
    private readonly sourceSets = new Map<string, Sources>();
    /** `<bucket>/<uuid>` of services, applications, manifests → the counter after their last write. */
    private readonly written = new Map<string, number>();
    private readonly running = new Map<string, Running>();
    private readonly assemblies = new Map<string, { seq: number; at: number; promise: Promise<ConfigAnswer> }>();
    /** Services, applications and manifests read lately (shared store only), by `<bucket>/<uuid>`. */
    private readonly kept = new Map<string, KeptSource>();
    /** The write counter. */
    private seq = 0;
    /** The counter after the last write of a service, application or manifest. */
    private lastSourceWrite = 0;
    /** Entries and assemblies that began below this counter value are never answered from. */
    private floor = 0;

    constructor(opts: ConfigCacheOptions) {
        this.shared = opts.shared;
        this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
        this.maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
        this.revalidateMs = opts.revalidateMs ?? SHARED_STORE_REVALIDATE_MS;
        this.fallbackMs = opts.fallbackMs ?? FEED_FALLBACK_MS;
        this.clock = opts.now ?? (() => performance.now());
    }

    /** The cache's clock (the change feed times its polls with it). */
    now(): number {
        return this.clock();
    }

    /** From the change feed: `uuid` of `bucket` was written or deleted by some process. */
    changed(bucket: BucketName, uuid: string): void {
        this.noteWrite(bucket, uuid);
    }

    /** From the change feed: every change committed before `startedAt` has been told, and since `since` every one is. */
    polled(startedAt: number, since: number): void {
        if (this.feedAt === null || startedAt >= this.feedAt) {
            this.feedAt = startedAt;
            this.feedSince = since;
        }
    }

    /** Whether the change feed vouches now for what was read from `at` on. */
    private feedCovers(at: number, now: number): boolean {
        return this.feedAt !== null && now - this.feedAt < this.revalidateMs && at >= this.feedSince && now - at < this.fallbackMs;
    }

    /** `store`, reporting to this cache every write it carries. */
    watch(store: Store): Store {
        return new WatchedStore(store, this);
    }

    get size(): number {
        return this.entries.size;
    }

    /**
     * The config of `uuid` if an entry answers for it now: with its JSON
     * when `withBody` (else the JSON only if kept), or null.
     */
    lookup(uuid: string, withBody: boolean): ConfigAnswer | null {
        const e = this.entries.get(uuid);
        if (e === undefined) {
            return null;
        }
        if (!this.answers(e)) {
            this.remove(uuid);
            return null;
        }
        if (withBody && e.body === null) {
            return null;
        }
        this.entries.delete(uuid);
        this.entries.set(uuid, e);
        if (e.body !== null) {
            this.bodies.delete(uuid);
            this.bodies.set(uuid, e);
        }
        return { etag: e.etag, body: e.body };
    }

    /** The config of `uuid`, from its entry, else assembled (its JSON always included then). */
    async get(ctx: Ctx, uuid: string, withBody: boolean): Promise<ConfigAnswer> {
        return this.lookup(uuid, withBody) ?? this.assemble(ctx, uuid);
    }

    /** Called by the watched store once a write of `bucket` settles. */
    noteWrite(bucket: BucketName, uuid: string): void {
        if (!WATCHED.has(bucket)) {
            return;
        }
        this.seq++;
        if (bucket === INSTANCES) {
            this.remove(uuid);
            const run = this.running.get(uuid);
            if (run !== undefined) {
                run.lastWrite = this.seq;
            }
            return;
        }
        this.written.set(`${bucket}/${uuid}`, this.seq);
        this.kept.delete(`${bucket}/${uuid}`);
        this.lastSourceWrite = this.seq;
        if (this.written.size > MAX_RECORDED_WRITES) {
            // Whatever began before now is dropped with the record it was checked against.
            this.floor = this.seq;
            this.written.clear();
            this.kept.clear();
            for (const k of [...this.entries.keys()]) {
                this.remove(k);
            }
        }
    }

    parents(ctx: Ctx): ParentReader {
        return this.reader(ctx, { at: this.now() });
    }

    /** Whether an entry may be answered from now. */
    private answers(e: Entry): boolean {
        if (e.seq < this.floor || !this.fresh(e.at, this.now())) {
            return false;
        }
        return this.lastSourceWrite <= e.seq || this.unwritten(e.sources.keys, e.seq);
    }

    /** No recorded write of any of `keys` above counter value `seq`. */
    private unwritten(keys: readonly string[], seq: number): boolean {
        for (const k of keys) {
            if ((this.written.get(k) ?? 0) > seq) {
                return false;
            }
        }
        return true;
    }

    private assemble(ctx: Ctx, uuid: string): Promise<ConfigAnswer> {
        const pending = this.assemblies.get(uuid);
        const now = this.now();
        if (pending !== undefined && pending.seq === this.seq && this.fresh(pending.at, now)) {
            return pending.promise;
        }
        const seq = this.seq;
        let run = this.running.get(uuid);
        if (run === undefined) {
            run = { count: 0, lastWrite: 0 };
            this.running.set(uuid, run);
        }
        run.count++;
        const mine = run;
        const promise = this.assembleOnce(ctx, uuid, seq, now, mine).finally(() => {
            if (--mine.count === 0) {
                this.running.delete(uuid);
            }
            if (this.assemblies.get(uuid)?.promise === promise) {
                this.assemblies.delete(uuid);
            }
        });
        this.assemblies.set(uuid, { seq, at: now, promise });
        return promise;
    }

    /** On a shared store: whether what was read from `at` on may still be answered at `now`. */
    private fresh(at: number, now: number): boolean {
        return !this.shared || now - at < this.revalidateMs || this.feedCovers(at, now);
    }

    /**
     * Where an assembly reads its sources: the store, or on a shared store
     * the kept sources; `oldest.at` is lowered to the start of the oldest
     * read used.
     */
    private reader(ctx: Ctx, oldest: { at: number }): SourceReader {
        if (!this.shared) {
            return storeReader(ctx);
        }
        const store = storeReader(ctx);
        // The local copy the change feed keeps current answers as of its last poll, when the feed vouches for that.
        const recent = ctx.store.capabilities().recentReads ?? null;
        const mirrored = <T extends JsonObject>(bucket: BucketName, uuid: string): T | null => {
            const got = recent?.get<T>(bucket, uuid) ?? null;
            if (got === null || got.value === null || !this.feedCovers(got.asOf, this.now())) {
                return null;
            }
            oldest.at = Math.min(oldest.at, got.asOf);
            return got.value;
        };
        const direct: SourceReader = {
            service: async (u) => mirrored<Service>(BUCKET_OF.service, u) ?? store.service(u),
            application: async (u) => mirrored<Application>(BUCKET_OF.application, u) ?? store.application(u),
            manifest: async (u) => mirrored<Manifest>(BUCKET_OF.manifest, u) ?? store.manifest(u),
        };
        const via =
            <T>(bucket: BucketName, read: (uuid: string) => Promise<T | null>) =>
            (uuid: string): Promise<T | null> => {
                const key = `${bucket}/${uuid}`;
                const now = this.now();
                let k = this.kept.get(key);
                if (k === undefined || !this.fresh(k.at, now) || k.seq < this.floor || (this.written.get(key) ?? 0) > k.seq) {
                    const mine: KeptSource = { promise: read(uuid), at: now, seq: this.seq };
                    k = mine;
                    if (this.kept.size >= MAX_KEPT_SOURCES) {
                        this.kept.clear();
                    }
                    this.kept.set(key, mine);
                    // Nothing (a 404) and failures are not kept.
                    mine.promise.then(
                        (v) => {
                            if (v === null && this.kept.get(key) === mine) {
                                this.kept.delete(key);
                            }
                        },
                        () => {
                            if (this.kept.get(key) === mine) {
                                this.kept.delete(key);
                            }
                        },
                    );
                }
                oldest.at = Math.min(oldest.at, k.at);
                return k.promise as Promise<T | null>;
            };
        return {
            // Null (not in the copy, or the copy cannot answer): assembleConfig reads the store.
            instance: (u) => Promise.resolve(mirrored<Instance>(INSTANCES, u)),
            service: via(BUCKET_OF.service, (u) => direct.service(u)),
            application: via(BUCKET_OF.application, (u) => direct.application(u)),
            manifest: via(BUCKET_OF.manifest, (u) => direct.manifest(u)),
        };
    }

    private async assembleOnce(ctx: Ctx, uuid: string, seq: number, started: number, run: Running): Promise<ConfigAnswer> {
        let assembled: Awaited<ReturnType<typeof assembleConfig>>;
        const oldest = { at: started };
        try {
            assembled = await assembleConfig(ctx, uuid, this.reader(ctx, oldest));
        } catch (err) {
            // An entry older than this attempt answers no more than the attempt did.
            const old = this.entries.get(uuid);
            if (old !== undefined && old.seq <= seq) {
                this.remove(uuid);
            }
            throw err;
        }
        const etag = configEtag(assembled.doc);
        const body = toBuffer(JSON.stringify(assembled.doc));
        const sources = this.intern(assembled.sources);
        if (seq >= this.floor && run.lastWrite <= seq && (this.lastSourceWrite <= seq || this.unwritten(sources.keys, seq))) {
            this.insert(uuid, { etag, body, bytes: body.length, sources, seq, at: oldest.at });
        } else {
            this.release(sources);
        }
        return { etag, body };
    }

    private insert(uuid: string, e: Entry): void {
        this.remove(uuid);
        this.entries.set(uuid, e);
        if (e.body !== null) {
            if (e.bytes > this.maxBodyBytes) {
                e.body = null;
            } else {
                this.bodies.set(uuid, e);
                this.bodyBytes += e.bytes;
                for (const [k, old] of this.bodies) {
                    if (this.bodyBytes <= this.maxBodyBytes) {
                        break;
                    }
                    this.dropBody(k, old);
                }
            }
        }
        for (const k of this.entries.keys()) {
            if (this.entries.size <= this.maxEntries) {
                break;
            }
            this.remove(k);
        }
    }

    private remove(uuid: string): void {
        const e = this.entries.get(uuid);
        if (e === undefined) {
            return;
        }
        this.entries.delete(uuid);
        this.release(e.sources);
        this.dropBody(uuid, e);
    }

    private dropBody(uuid: string, e: Entry): void {
        if (e.body !== null) {
            this.bodies.delete(uuid);
            this.bodyBytes -= e.bytes;
            e.body = null;
        }
    }

    private intern(s: ConfigSources): Sources {
        const id = `${s.service} ${s.application} ${s.manifests.join(' ')}`;
        let got = this.sourceSets.get(id);
        if (got === undefined) {
            got = {
                id,
                keys: [
                    `${BUCKET_OF.service}/${s.service}`,
                    `${BUCKET_OF.application}/${s.application}`,
                    ...s.manifests.map((m) => `${BUCKET_OF.manifest}/${m}`),
                ],
                refs: 0,
            };
            this.sourceSets.set(id, got);
        }
        got.refs++;
        return got;
    }

    private release(s: Sources): void {
        if (--s.refs === 0) {
            this.sourceSets.delete(s.id);
        }
    }
}

/**
 * `text` in UTF-8, in memory of its own: outside the JavaScript heap, and
 * not a slice of a shared pool that a kept body would hold on to.
 */
function toBuffer(text: string): Buffer {
    const buf = Buffer.allocUnsafeSlow(Buffer.byteLength(text, 'utf8'));
    buf.write(text, 'utf8');
    return buf;
}
