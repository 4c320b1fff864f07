// RolloutManager: starts, runs, persists and resumes agent rollouts.
//
// Each item is one UpgradeInstance through the agent deployer. Up to
// `concurrency` run at once; a server busy with another agent operation is
// retried later (the deployer's per-server lock keeps cn-agent and
// config-agent from running beside other agents). The running average
// duration flags stalled items; a hard timeout fails them.

import { randomUUID } from 'node:crypto';

import type Logger from 'bunyan';

import { hasCode, invalidArgument, noDeployer, noSuch } from '../errors.js';
import type { Ctx, ReqInfo } from '../model/context.js';
import { upgradeInstance } from '../model/instances.js';
import { find } from '../model/objects.js';
import type { Instance, Service } from '../model/types.js';
import { validateRequest } from '../model/validate.js';
import type { RequestOf } from '../../schemas/requests.js';
import { BUCKETS, indexFieldValue } from '../stor/buckets.js';
import { and, eq } from '../stor/store.js';
import {
    DEFAULT_CONCURRENCY,
    DEFAULT_INSTANCE_TIMEOUT_MS,
    DEFAULT_STALL_FACTOR,
    DEFAULT_STALL_MIN_FINISHED,
    type ItemState,
    type Rollout,
    type RolloutItem,
} from './types.js';

const BUCKET = BUCKETS.rollouts.name;
const BUSY_RETRY_MS = 100;
const PERSIST_INTERVAL_MS = 500;

/** What a rollout is started with: the CreateRollout request schema's type. */
export type StartRollout = RequestOf<'CreateRollout'>;

/** Check a rollout request against its schema (409 with the field named). */
export function rolloutInput(params: Record<string, unknown>): StartRollout {
    validateRequest('CreateRollout', params);
    return params;
}

/** Emitted as progress is made (sapiadm watches it over REST; metrics use it). */
export type RolloutListener = (r: Rollout) => void;

export interface RolloutManagerDeps {
    /** The model (rollouts upgrade instances as UpgradeInstance does). */
    ctx: Ctx;
    /** Told of every progress step (metrics). */
    onProgress?: RolloutListener;
}

export class RolloutManager {
    private readonly running = new Map<string, { rollout: Rollout; cancel: boolean; done: Promise<void> }>();
    private readonly ctx: Ctx;
    private readonly onProgress: RolloutListener | undefined;
    private readonly log: Logger;

    constructor(deps: RolloutManagerDeps) {
        this.ctx = deps.ctx;
        this.onProgress = deps.onProgress;
        this.log = deps.ctx.log.child({ component: 'rollout' });
    }

    // ---- API

    async start(raw: StartRollout, reqId: string): Promise<Rollout> {
        // Callers other than the route (sapiadm's tests, resumption) are held to the same schema.
        const input = rolloutInput({ ...raw });
        if (this.ctx.mode.current !== 'full') {
            throw invalidArgument('rollouts deploy agents and need full mode');
        }
        if (!this.ctx.deployers.agent) {
            throw noDeployer('agent');
        }
        const svc = await find<Service>(this.ctx.store, 'service', input.service_uuid);
        if (!svc) {
            throw noSuch('service', input.service_uuid);
        }
        if (svc.value.type !== 'agent') {
            throw invalidArgument(`service ${svc.value.name} is not an agent service`);
        }
        const concurrency = input.concurrency ?? DEFAULT_CONCURRENCY;
        let targets: Instance[] = [];
        for await (const chunk of this.ctx.store.iterate<Instance>(BUCKETS.instances.name, eq('service_uuid', svc.value.uuid))) {
            targets.push(...chunk.map((c) => c.value));
        }
        if (input.servers) {
            const want = new Set(input.servers);
            targets = targets.filter((i) => want.has(serverOf(i)));
        }
        if (input.instances) {
            const want = new Set(input.instances);
            targets = targets.filter((i) => want.has(i.uuid));
        }
        // The image is checked once here (a clear 4xx now, not N failures later).
        const agent = this.ctx.deployers.agent;
        await agent.checkImage?.({ reqId, log: this.log, async: false }, input.image_uuid, svc.value);
        const now = new Date().toISOString();
        const rollout: Rollout = {
            uuid: randomUUID(),
            service_uuid: svc.value.uuid,
            service_name: svc.value.name,
            image_uuid: input.image_uuid,
            concurrency,
            stall_factor: input.stall_factor ?? DEFAULT_STALL_FACTOR,
            stall_min_finished: input.stall_min_finished ?? DEFAULT_STALL_MIN_FINISHED,
            instance_timeout_ms: input.instance_timeout_ms ?? DEFAULT_INSTANCE_TIMEOUT_MS,
            state: 'running',
            created_at: now,
            counts: emptyCounts(),
            warnings: [],
            items: targets.map((i) => ({ instance_uuid: i.uuid, server_uuid: serverOf(i), state: 'pending', attempts: 0 })),
        };
        // All servers checked in one CNAPI call: the ones that cannot take an
        // upgrade now fail at once, clearly, instead of one by one later.
        const notReady = agent.checkServers
            ? await agent.checkServers({ reqId, log: this.log, async: false }, [...new Set(rollout.items.map((i) => i.server_uuid))])
            : new Map<string, string>();
        for (const item of rollout.items) {
            const why = notReady.get(item.server_uuid);
            if (why) {
                item.state = 'failed';
                item.error = why;
                item.finished_at = now;
            }
        }
        if (notReady.size > 0) {
            rollout.warnings.push(`${now}: ${notReady.size} server(s) not ready; their items failed without an attempt`);
        }
        recount(rollout);
        await this.ctx.store.put(BUCKET, structuredClone(rollout), { etag: null });
        this.log.info(
            { rollout: rollout.uuid, service: rollout.service_name, image: rollout.image_uuid, n: rollout.items.length, concurrency },
            'rollout started',
        );
        this.launch(rollout, reqId);
        return rollout;
    }

    async get(uuid: string): Promise<Rollout> {
        const live = this.running.get(uuid);
        if (live) {
            return live.rollout;
        }
        const stored = await this.ctx.store.get<Rollout>(BUCKET, uuid);
        if (!stored) {
            throw noSuch('rollout', uuid);
        }
        return stored.value;
    }

    async list(serviceUuid?: string): Promise<Rollout[]> {
        const filter = serviceUuid ? and(eq('service_uuid', serviceUuid)) : and();
        const page = await this.ctx.store.find<Rollout>(BUCKET, filter);
        return page.items.map((s) => this.running.get(s.value.uuid)?.rollout ?? s.value);
    }

    /** Cancel: pending items are not started; running ones finish. */
    async cancel(uuid: string): Promise<Rollout> {
        const live = this.running.get(uuid);
        if (!live) {
            return this.get(uuid);
        }
        live.cancel = true;
        for (const item of live.rollout.items) {
            if (item.state === 'pending') {
                item.state = 'canceled';
            }
        }
        recount(live.rollout);
        await this.persist(live.rollout, true);
        this.emit(live.rollout);
        return live.rollout;
    }

    /** At start-up: resume rollouts a restart interrupted. */
    async resumeAll(): Promise<number> {
        const page = await this.ctx.store.find<Rollout>(BUCKET, eq('state', 'running'));
        for (const { value: r } of page.items) {
            const interrupted = r.items.filter((i) => i.state === 'running' || i.state === 'stalled');
            for (const item of interrupted) {
                item.state = 'pending';
            }
            r.resumed_at = new Date().toISOString();
            r.warnings.push(`${r.resumed_at}: resumed after a restart; ${interrupted.length} interrupted item(s) re-run`);
            recount(r);
            await this.persist(r, true);
            this.log.warn({ rollout: r.uuid, rerun: interrupted.length }, 'resuming an interrupted rollout');
            this.launch(r, `resume-${r.uuid}`);
        }
        return page.items.length;
    }

    /** Resolves when every running rollout has finished (tests, shutdown). */
    async idle(): Promise<void> {
        await Promise.all([...this.running.values()].map((r) => r.done));
    }

    // ---- execution

    private launch(rollout: Rollout, reqId: string): void {
        const entry = { rollout, cancel: false, done: Promise.resolve() };
        entry.done = this.run(entry, reqId).catch((err: unknown) => {
            this.log.error({ err, rollout: rollout.uuid }, 'rollout runner crashed');
        });
        this.running.set(rollout.uuid, entry);
    }

    private async run(entry: { rollout: Rollout; cancel: boolean }, reqId: string): Promise<void> {
        const r = entry.rollout;
        const queue = r.items.filter((i) => i.state === 'pending');
        const watchdog = setInterval(() => this.checkStalls(r), 250);
        try {
            const worker = async (): Promise<void> => {
                for (;;) {
                    if (entry.cancel) {
                        return;
                    }
                    const item = queue.shift();
                    if (!item) {
                        return;
                    }
                    await this.runItem(r, item, reqId);
                }
            };
            await Promise.all(Array.from({ length: Math.min(r.concurrency, Math.max(queue.length, 1)) }, worker));
        } finally {
            clearInterval(watchdog);
        }
        recount(r);
        r.state = entry.cancel ? 'canceled' : r.counts.failed > 0 ? 'failed' : 'succeeded';
        r.finished_at = new Date().toISOString();
        await this.persist(r, true);
        this.running.delete(r.uuid);
        this.log.info({ rollout: r.uuid, state: r.state, counts: r.counts, average_ms: r.average_ms }, 'rollout finished');
        this.emit(r);
    }

    private async runItem(r: Rollout, item: RolloutItem, reqId: string): Promise<void> {
        item.state = 'running';
        item.attempts += 1;
        const start = Date.now();
        item.started_at = new Date(start).toISOString();
        delete item.error;
        recount(r);
        void this.persist(r);
        this.emit(r);
        const info: ReqInfo = { v2: true, reqId: `${reqId}/${item.instance_uuid}`, log: this.log };
        const deadline = start + r.instance_timeout_ms;
        // At the deadline the upgrade is aborted, not left running: it stops
        // waiting on CNAPI, gives the server's lock back, and is counted
        // (as timed out) when the item ends.
        const timeout = new AbortController();
        // Node's timers run on the event loop's cached clock, which can be a
        // little behind Date.now(): re-arm for what is left, so an item never
        // times out before its deadline as its own times (start, duration) see it.
        let timer: NodeJS.Timeout;
        const arm = (ms: number): void => {
            timer = setTimeout(() => {
                const left = deadline - Date.now();
                if (left > 0) {
                    arm(left);
                    return;
                }
                timeout.abort(
                    new Error(`instance ${item.instance_uuid} on server ${item.server_uuid} timed out after ${(r.instance_timeout_ms / 1000).toFixed(1)}s`),
                );
            }, ms);
        };
        arm(r.instance_timeout_ms);
        try {
            for (;;) {
                try {
                    const opts = { imageChecked: true, serverChecked: r.resumed_at === undefined, signal: timeout.signal };
                    await untilAborted(upgradeInstance(this.ctx, info, item.instance_uuid, { image_uuid: r.image_uuid }, opts), timeout.signal);
                    break;
                } catch (err) {
                    if (timeout.signal.aborted) {
                        throw timeout.signal.reason;
                    }
                    // The server is busy with another agent operation: wait our turn.
                    if (hasCode(err, 'OperationInProgress') && Date.now() + BUSY_RETRY_MS < deadline) {
                        await new Promise((res) => setTimeout(res, BUSY_RETRY_MS));
                        continue;
                    }
                    throw err;
                }
            }
            item.state = 'succeeded';
        } catch (err) {
            item.state = 'failed';
            item.error = (err as Error).message;
            this.log.warn({ rollout: r.uuid, instance: item.instance_uuid, server: item.server_uuid, err }, 'rollout item failed');
        } finally {
            clearTimeout(timer!);
        }
        item.finished_at = new Date().toISOString();
        item.duration_ms = Date.now() - start;
        if (item.state === 'succeeded') {
            const done = r.items.filter((i) => i.state === 'succeeded' && i.duration_ms !== undefined);
            r.average_ms = Math.round(done.reduce((s, i) => s + (i.duration_ms ?? 0), 0) / done.length);
        }
        recount(r);
        void this.persist(r);
        this.emit(r);
    }

    /**
     * Flag items running over stall_factor times the average of the finished
     * ones (once stall_min_finished have finished): an install can hang on a
     * badly set up CN, and the operator should hear of it.
     */
    private checkStalls(r: Rollout): void {
        const finished = r.items.filter((i) => i.state === 'succeeded').length;
        if (r.average_ms === undefined || finished < r.stall_min_finished) {
            return;
        }
        const limit = r.average_ms * r.stall_factor;
        const now = Date.now();
        let changed = false;
        for (const item of r.items) {
            if (item.state === 'running' && item.started_at && now - Date.parse(item.started_at) > limit) {
                item.state = 'stalled';
                const msg = `instance ${item.instance_uuid} on server ${item.server_uuid} has run ${((now - Date.parse(item.started_at)) / 1000).toFixed(1)}s, over ${r.stall_factor}x the average ${(r.average_ms / 1000).toFixed(1)}s`;
                r.warnings.push(msg);
                this.log.warn({ rollout: r.uuid, instance: item.instance_uuid, server: item.server_uuid }, `stalled: ${msg}`);
                changed = true;
            }
        }
        if (changed) {
            recount(r);
            void this.persist(r);
            this.emit(r);
        }
    }

    private emit(r: Rollout): void {
        this.onProgress?.(r);
    }

    private readonly flushes = new Map<string, { timer: NodeJS.Timeout | null; chain: Promise<void> }>();

    /**
     * Progress is written at most every PERSIST_INTERVAL_MS per rollout
     * (a 1,000-item rollout object is large); `final` writes at once. A
     * restart re-runs items finished in the last interval, which is safe:
     * installing the same image again is idempotent.
     */
    private persist(r: Rollout, final = false): Promise<void> {
        let f = this.flushes.get(r.uuid);
        if (!f) {
            f = { timer: null, chain: Promise.resolve() };
            this.flushes.set(r.uuid, f);
        }
        const state = f;
        const write = (): Promise<void> => {
            state.timer = null;
            state.chain = state.chain.then(async () => {
                try {
                    await this.ctx.store.put(BUCKET, structuredClone(r));
                } catch (err) {
                    this.log.error({ err, rollout: r.uuid }, 'could not persist rollout progress');
                }
            });
            return state.chain;
        };
        if (final) {
            if (state.timer) {
                clearTimeout(state.timer);
            }
            const done = write();
            this.flushes.delete(r.uuid);
            return done;
        }
        if (!state.timer) {
            state.timer = setTimeout(() => void write(), PERSIST_INTERVAL_MS);
        }
        return state.chain;
    }
}

function emptyCounts(): Record<ItemState, number> {
    return { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0 };
}

function recount(r: Rollout): void {
    const c = emptyCounts();
    for (const i of r.items) {
        c[i.state] += 1;
    }
    r.counts = c;
}

/** `p`, or the signal's reason as soon as it aborts (whether or not `p` heeds the signal). */
async function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
        return await Promise.race([p, aborted]);
    } finally {
        if (onAbort) signal.removeEventListener('abort', onAbort);
    }
}

/** The server an instance is on, wherever its record keeps it (SAPI 2.1.2's records: only in params). */
function serverOf(i: Instance): string {
    return indexFieldValue(BUCKETS.instances, i, 'server_uuid') ?? '';
}
