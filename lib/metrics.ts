// Prometheus metrics, served on their own port (config metricsPort, as
// 2.1.2's http://<adminIp>:8881/metrics). One registry per app, no globals.
//
// prom-client's parts are loaded one by one: its index also loads the push
// gateway client, the summary, the cluster aggregator and every default
// (process) metric with what they use (perf_hooks, v8), none of which a
// start needs; the default metrics are loaded with the /metrics listener.

import http from 'node:http';

import Counter from 'prom-client/lib/counter.js';
import Gauge from 'prom-client/lib/gauge.js';
import Histogram from 'prom-client/lib/histogram.js';
import Registry from 'prom-client/lib/registry.js';

import type { DownstreamObservation } from './clients/http.js';
import type { DeployReq, Deployer } from './model/deployer.js';
import { notFound } from './errors.js';
import type { Rollout } from './rollout/types.js';
import type { BucketName } from './stor/buckets.js';
import type { BucketStatus } from './stor/moray/buckets-init.js';
import { ForwardingStore } from './stor/forwarding.js';
import type { BatchOp, DelOptions, Filter, JsonObject, Page, PageRequest, PutOptions, Store, StoreCapabilities, Stored } from './stor/store.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60];

const FINAL_ROLLOUT_STATES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'canceled', 'reverted']);
/** The key under which countOutcomes remembers the state a rollout ended in. */
const ENDED = '#ended';
const ROLLOUTS_REMEMBERED = 100;

export class Metrics {
    readonly registry = new Registry();
    private readonly requests: Counter<'route' | 'method' | 'status'>;
    private readonly latency: Histogram<'route' | 'method' | 'status'>;
    private readonly storeOps: Histogram<'backend' | 'op' | 'outcome'>;
    private readonly downstream: Histogram<'service' | 'method' | 'status'>;
    private readonly downstreamErrors: Counter<'service'>;
    readonly deployDuration: Histogram<'type' | 'op' | 'outcome'>;
    private readonly rolloutItems: Gauge<'rollout' | 'service' | 'state'>;
    private readonly rolloutAverage: Gauge<'rollout' | 'service'>;
    private readonly rolloutsFinished: Counter<'state'>;
    private readonly rolloutItemsFinished: Counter<'outcome'>;
    /** Per rollout this process has seen: the final state each item was counted in. */
    private readonly itemsCounted = new Map<string, Map<string, string>>();

    /** `bucketStatus`: Moray bucket setup and backfill progress, read at every scrape. */
    constructor(labels: Record<string, string> = {}, bucketStatus?: () => Record<string, BucketStatus> | null) {
        this.registry.setDefaultLabels(labels);
        const r = [this.registry];
        this.requests = new Counter({
            name: 'sapi_http_requests_total',
            help: 'HTTP requests by route and status',
            labelNames: ['route', 'method', 'status'],
            registers: r,
        });
        this.latency = new Histogram({
            name: 'sapi_http_request_duration_seconds',
            help: 'HTTP request latency',
            labelNames: ['route', 'method', 'status'],
            buckets: LATENCY_BUCKETS,
            registers: r,
        });
        this.storeOps = new Histogram({
            name: 'sapi_store_operation_duration_seconds',
            help: 'Store operation latency',
            labelNames: ['backend', 'op', 'outcome'],
            buckets: LATENCY_BUCKETS,
            registers: r,
        });
        this.downstream = new Histogram({
            name: 'sapi_downstream_request_duration_seconds',
            help: 'Requests to Triton services',
            labelNames: ['service', 'method', 'status'],
            buckets: LATENCY_BUCKETS,
            registers: r,
        });
        this.downstreamErrors = new Counter({
            name: 'sapi_downstream_errors_total',
            help: 'Downstream 5xx answers and transport failures',
            labelNames: ['service'],
            registers: r,
        });
        this.deployDuration = new Histogram({
            name: 'sapi_deploy_duration_seconds',
            help: 'Deploy operations (create, upgrade, destroy) by instance type',
            labelNames: ['type', 'op', 'outcome'],
            buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600],
            registers: r,
        });
        this.rolloutItems = new Gauge({
            name: 'sapi_rollout_items',
            help: 'Rollout items by state',
            labelNames: ['rollout', 'service', 'state'],
            registers: r,
        });
        this.rolloutAverage = new Gauge({
            name: 'sapi_rollout_average_seconds',
            help: 'Running average item duration of a rollout',
            labelNames: ['rollout', 'service'],
            registers: r,
        });
        this.rolloutsFinished = new Counter({
            name: 'sapi_rollouts_finished_total',
            help: 'Rollouts that ended, by final state',
            labelNames: ['state'],
            registers: r,
        });
        this.rolloutItemsFinished = new Counter({
            name: 'sapi_rollout_items_finished_total',
            help: 'Rollout items that ended, by outcome (succeeded, failed, skipped, canceled, reverted)',
            labelNames: ['outcome'],
            registers: r,
        });
        for (const state of ['succeeded', 'failed', 'canceled', 'reverted']) {
            this.rolloutsFinished.inc({ state }, 0);
        }
        for (const outcome of ['succeeded', 'failed', 'skipped', 'canceled', 'reverted']) {
            this.rolloutItemsFinished.inc({ outcome }, 0);
        }
        if (bucketStatus) {
            this.watchBuckets(bucketStatus);
        }
    }

    request(route: string, method: string, status: number, ms: number): void {
        const labels = { route, method, status: String(status) };
        this.requests.inc(labels);
        this.latency.observe(labels, ms / 1000);
    }

    downstreamCall(o: DownstreamObservation): void {
        this.downstream.observe({ service: o.service, method: o.method, status: String(o.status) }, o.seconds);
        if (o.status === 0 || o.status >= 500) {
            this.downstreamErrors.inc({ service: o.service });
        }
    }

    private watchBuckets(status: () => Record<string, BucketStatus> | null): void {
        const r = [this.registry];
        const each = (fn: (bucket: string, s: BucketStatus) => void): void => {
            for (const [bucket, s] of Object.entries(status() ?? {})) {
                fn(bucket, s);
            }
        };
        new Gauge({
            name: 'sapi_moray_bucket_ready',
            help: 'Moray bucket set up, reindexed, migrated and swept (1), or not yet (0)',
            labelNames: ['bucket'],
            registers: r,
            collect() {
                this.reset();
                each((bucket, s) => this.set({ bucket }, s.phase === 'ready' ? 1 : 0));
            },
        });
        new Gauge({
            name: 'sapi_moray_backfill_rows',
            help: 'Rows the derived-index backfill has scanned and rewritten',
            labelNames: ['bucket', 'kind'],
            registers: r,
            collect() {
                this.reset();
                each((bucket, s) => {
                    if (s.backfill) {
                        this.set({ bucket, kind: 'scanned' }, s.backfill.scanned);
                        this.set({ bucket, kind: 'rewritten' }, s.backfill.rewritten);
                    }
                });
            },
        });
        new Gauge({
            name: 'sapi_moray_backfill_rows_per_second',
            help: 'Rows per second of the running derived-index backfill',
            labelNames: ['bucket'],
            registers: r,
            collect() {
                this.reset();
                each((bucket, s) => {
                    if (s.backfill) this.set({ bucket }, s.backfill.rate);
                });
            },
        });
        new Gauge({
            name: 'sapi_moray_migration_rows',
            help: 'Rows a numbered data migration has scanned and rewritten',
            labelNames: ['bucket', 'migration', 'name', 'kind'],
            registers: r,
            collect() {
                this.reset();
                each((bucket, s) => {
                    for (const m of s.migrations) {
                        const labels = { bucket, migration: String(m.number), name: m.name };
                        this.set({ ...labels, kind: 'scanned' }, m.scanned);
                        this.set({ ...labels, kind: 'rewritten' }, m.rewritten);
                    }
                });
            },
        });
        new Gauge({
            name: 'sapi_moray_migration_done',
            help: 'Numbered data migration done (1), or pending or running (0)',
            labelNames: ['bucket', 'migration', 'name'],
            registers: r,
            collect() {
                this.reset();
                each((bucket, s) => {
                    for (const m of s.migrations) {
                        this.set({ bucket, migration: String(m.number), name: m.name }, m.state === 'done' ? 1 : 0);
                    }
                });
            },
        });
    }

    /**
     * A rollout's progress. Its gauges live while it runs: once it has
     * ended they are removed, so finished rollouts do not pile up series.
     * The counters of ended rollouts and items stay: an outcome between
     * two scrapes is still seen.
     */
    rollout(r: Rollout): void {
        this.countOutcomes(r);
        const labels = { rollout: r.uuid, service: r.service_name };
        if (r.state !== 'running') {
            for (const state of Object.keys({ skipped: 0, ...r.counts })) {
                this.rolloutItems.remove({ ...labels, state });
            }
            this.rolloutAverage.remove(labels);
            return;
        }
        for (const [state, n] of Object.entries({ skipped: 0, ...r.counts })) {
            this.rolloutItems.set({ ...labels, state }, n);
        }
        if (r.average_ms !== undefined) {
            this.rolloutAverage.set(labels, r.average_ms / 1000);
        }
    }

    /** Each item counted once per final state it reaches; each rollout once when it ends. */
    private countOutcomes(r: Rollout): void {
        let seen = this.itemsCounted.get(r.uuid);
        if (!seen) {
            seen = new Map();
            this.itemsCounted.set(r.uuid, seen);
        }
        for (const item of r.items) {
            if (item.state !== 'succeeded' && item.state !== 'failed' && item.state !== 'skipped' && item.state !== 'canceled') {
                continue;
            }
            const key = `${item.phase ?? 'main'}/${item.instance_uuid}`;
            const outcome = item.phase === 'revert' && item.state === 'succeeded' ? 'reverted' : item.state;
            if (seen.get(key) !== `${outcome}/${item.attempts}`) {
                seen.set(key, `${outcome}/${item.attempts}`);
                this.rolloutItemsFinished.inc({ outcome });
            }
        }
        const ended = FINAL_ROLLOUT_STATES.has(r.state);
        if (ended && seen.get(ENDED) !== r.state) {
            seen.set(ENDED, r.state);
            this.rolloutsFinished.inc({ state: r.state });
        }
        // What is remembered of ended rollouts is bounded (a revert of one of them later is still counted right).
        if (ended && this.itemsCounted.size > ROLLOUTS_REMEMBERED) {
            for (const [uuid, m] of this.itemsCounted) {
                if (m.has(ENDED) && uuid !== r.uuid) {
                    this.itemsCounted.delete(uuid);
                    break;
                }
            }
        }
    }

    storeOp(backend: string, op: string, seconds: number, ok: boolean): void {
        this.storeOps.observe({ backend, op, outcome: ok ? 'ok' : 'error' }, seconds);
    }

    private processMetrics: Promise<void> | null = null;

    /**
     * Node's own metrics under their standard names (process_*, nodejs_*), as
     * every Node exporter names them; SAPI's own metrics are sapi_*. They
     * start with the /metrics listener, the only reader of the registry:
     * loading and setting them up (an event-loop monitor, a GC observer, a
     * dozen collectors) is no part of serving the first requests.
     */
    private collectProcessMetrics(): Promise<void> {
        this.processMetrics ??= import('prom-client/lib/defaultMetrics.js').then(({ default: collectDefaultMetrics }) => {
            collectDefaultMetrics({ register: this.registry });
        });
        return this.processMetrics;
    }

    /** GET /metrics on its own listener; resolves with the bound port. */
    async listen(port: number, host: string): Promise<{ port: number; close: () => Promise<void> }> {
        await this.collectProcessMetrics();
        const srv = http.createServer((req, res) => {
            if (req.method !== 'GET' || !req.url?.startsWith('/metrics')) {
                res.writeHead(404, { 'content-type': 'application/json' });
                res.end(JSON.stringify(notFound(`${req.url ?? ''} does not exist`)));
                return;
            }
            this.registry.metrics().then(
                (text) => {
                    res.writeHead(200, { 'content-type': this.registry.contentType });
                    res.end(text);
                },
                (err: unknown) => {
                    res.writeHead(500);
                    res.end(String(err));
                },
            );
        });
        return new Promise((resolve, reject) => {
            srv.once('error', reject);
            srv.listen(port, host, () => {
                const addr = srv.address();
                resolve({
                    port: typeof addr === 'object' && addr ? addr.port : port,
                    close: () => new Promise<void>((done) => srv.close(() => done())),
                });
            });
        });
    }
}

/** Times every store operation (a decorator: the backends stay unaware). */
export class InstrumentedStore extends ForwardingStore {
    constructor(
        readonly inner: Store,
        private readonly metrics: Metrics,
    ) {
        super();
    }

    private async timed<T>(op: string, fn: () => Promise<T>): Promise<T> {
        const t0 = process.hrtime.bigint();
        let ok = false;
        try {
            const out = await fn();
            ok = true;
            return out;
        } finally {
            this.metrics.storeOp(this.inner.name, op, Number(process.hrtime.bigint() - t0) / 1e9, ok);
        }
    }

    override ping(): Promise<boolean> {
        return this.timed('ping', () => this.inner.ping());
    }
    override get<T extends JsonObject>(bucket: BucketName, uuid: string): Promise<Stored<T> | null> {
        return this.timed('get', () => this.inner.get<T>(bucket, uuid));
    }
    override put<T extends JsonObject>(bucket: BucketName, value: T, opts?: PutOptions): Promise<Stored<T>> {
        return this.timed('put', () => this.inner.put(bucket, value, opts));
    }
    override del(bucket: BucketName, uuid: string, opts?: DelOptions): Promise<void> {
        return this.timed('del', () => this.inner.del(bucket, uuid, opts));
    }
    override find<T extends JsonObject>(bucket: BucketName, filter: Filter, page?: PageRequest): Promise<Page<T>> {
        return this.timed('find', () => this.inner.find<T>(bucket, filter, page));
    }
    override count(bucket: BucketName, filter: Filter): Promise<number> {
        return this.timed('count', () => this.inner.count(bucket, filter));
    }
    override batch(ops: BatchOp[]): Promise<void> {
        return this.timed('batch', () => this.inner.batch(ops));
    }

    /**
     * The backend's JSON list fast path, when it has one now: a page is
     * timed as a find; a stream, like iterate(), is not timed.
     */
    override capabilities(): StoreCapabilities {
        const caps = super.capabilities();
        const lists = caps.jsonLists;
        if (!lists) {
            return caps;
        }
        return {
            ...caps,
            jsonLists: {
                findJson: (bucket, filter, page, omit) => this.timed('find', () => lists.findJson(bucket, filter, page, omit)),
                streamJson: (bucket, filter, chunkSize, omit) => lists.streamJson(bucket, filter, chunkSize, omit),
            },
        };
    }
}

/**
 * Times create/adopt/upgrade/destroy of a deployer. Each operation is
 * counted once, when it ends: with outcome ok or error, or, when the
 * caller's deadline aborts it first (req.signal), with outcome timeout at
 * that moment, whether or not the deployer has stopped yet.
 */
export function instrumentDeployer(d: Deployer, metrics: Metrics): Deployer {
    const timed = async <T>(op: string, req: DeployReq, fn: () => Promise<T>): Promise<T> => {
        const end = metrics.deployDuration.startTimer({ type: d.type, op });
        let counted = false;
        const count = (outcome: 'ok' | 'error' | 'timeout'): void => {
            if (!counted) {
                counted = true;
                end({ outcome });
            }
        };
        const onAbort = (): void => count('timeout');
        if (req.signal?.aborted) onAbort();
        req.signal?.addEventListener('abort', onAbort, { once: true });
        try {
            const out = await fn();
            count('ok');
            return out;
        } catch (err) {
            count('error');
            throw err;
        } finally {
            req.signal?.removeEventListener('abort', onAbort);
        }
    };
    return {
        type: d.type,
        create: (req, plan) => timed('create', req, () => d.create(req, plan)),
        adopt: (req, plan) => timed('adopt', req, () => d.adopt(req, plan)),
        upgrade: (req, plan, image) => timed('upgrade', req, () => d.upgrade(req, plan, image)),
        destroy: (req, plan) => timed('destroy', req, () => d.destroy(req, plan)),
        ...(d.checkImage ? { checkImage: d.checkImage.bind(d) } : {}),
        ...(d.checkServers ? { checkServers: d.checkServers.bind(d) } : {}),
    };
}
