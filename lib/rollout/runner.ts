// RolloutManager: starts, runs, persists, pauses, reverts and resumes
// agent rollouts.
//
// A rollout works on up to `concurrency` servers at once; on each server
// its items (one per planned agent instance) run one after another, so
// cn-agent and config-agent are never upgraded beside another agent there
// (and cn-agent, whose upgrade restarts the task runner, goes last). Each
// item is one UpgradeInstance through the agent deployer; a server busy
// with another agent operation is retried later. The running average
// duration flags stalled items; a hard timeout fails them.
//
// The SAPI driving a rollout holds its lease `rollout/<uuid>` and keeps it
// alive; if the lease is lost it starts no more items. Every SAPI looks,
// every ttl/2, for running or reverting rollouts nobody holds and takes
// them over, never repeating finished items. A paused rollout is driven by
// nobody: promote, resume, revert and cancel take its lease to act on it.

import type Logger from 'bunyan';

import type { CnapiClient } from '../clients/cnapi.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import { hasCode, invalidArgument, noDeployer, noSuch, operationInProgress } from '../errors.js';
import type { Ctx, ReqInfo } from '../model/context.js';
import { createInstance, deleteInstance, upgradeInstance } from '../model/instances.js';
import { flagValue } from '../model/validate.js';
import type { LeaseHandle, Leases } from '../model/leases.js';
import { find } from '../model/objects.js';
import type { Service } from '../model/types.js';
import { BUCKETS } from '../stor/buckets.js';
import { ALL, eq, oneOf } from '../stor/store.js';
import {
    failureLimit,
    failuresCounted,
    nothingReason,
    planRollout,
    previewOf,
    recount,
    retotal,
    rolloutInput,
    serverView,
    settleItems,
    type PlanDeps,
    type StartRollout,
} from './plan.js';
import {
    ACTIVE_STATES,
    FINAL_STATES,
    type PausedReason,
    type Rollout,
    type RolloutItem,
    type RolloutPreview,
    type RolloutState,
    type RolloutSummary,
} from './types.js';

export { rolloutInput, type StartRollout } from './plan.js';
export type { RolloutPreview, RolloutSummary } from './types.js';

const BUCKET = BUCKETS.rollouts.name;
const BUSY_RETRY_MS = 100;
const PERSIST_INTERVAL_MS = 500;

/** Emitted as progress is made (sapiadm watches it over REST; metrics use it). */
export type RolloutListener = (r: Rollout) => void;

export interface RolloutManagerDeps {
    /** The model (rollouts upgrade instances as UpgradeInstance does). */
    ctx: Ctx;
    /** Who drives which rollout (in this process's memory on the embedded store, in Moray otherwise). */
    leases: Leases;
    /** CNAPI, for server.agents (none when the config names no CNAPI). */
    cnapi: CnapiClient | undefined;
    /** IMGAPI, for image versions (none: versions only from server.agents). */
    imgapi?: ImgapiClient | undefined;
    /** Told of every progress step (metrics). */
    onProgress?: RolloutListener;
}

/** A rollout this process drives. */
interface Live {
    rollout: Rollout;
    lease: LeaseHandle;
    stopKeepAlive: () => void;
    cancel: boolean;
    /** Start no more items: pause for failures, or revert once the running ones end. */
    halt: 'failures' | 'revert' | null;
    /** Taken over after a restart (servers are checked again per item). */
    resumed: boolean;
    /** Durations of the succeeded items, for average_ms. */
    durations: { sum: number; n: number };
    done: Promise<void>;
}

export function rolloutLeaseKey(uuid: string): string {
    return `rollout/${uuid}`;
}

export class RolloutManager {
    private readonly running = new Map<string, Live>();
    private readonly ctx: Ctx;
    private readonly leases: Leases;
    private readonly cnapi: CnapiClient | undefined;
    private readonly imgapi: ImgapiClient | undefined;
    private readonly onProgress: RolloutListener | undefined;
    private readonly log: Logger;
    private readonly autoPromotions = new Map<string, NodeJS.Timeout>();
    private scanTimer: NodeJS.Timeout | null = null;
    private scanning: Promise<number> | null = null;
    private stopped = false;

    constructor(deps: RolloutManagerDeps) {
        this.ctx = deps.ctx;
        this.onProgress = deps.onProgress;
        this.log = deps.ctx.log.child({ component: 'rollout' });
        this.leases = deps.leases;
        this.cnapi = deps.cnapi;
        this.imgapi = deps.imgapi;
    }

    // ---- API

    /**
     * Plan a rollout and start it; with `dry_run`, answer the plan without
     * starting anything (the same planner decides both).
     */
    async start(raw: StartRollout, reqId: string): Promise<Rollout | RolloutPreview> {
        // Callers other than the route (sapiadm's tests, resumption) are held to the same schema.
        const input = rolloutInput({ ...raw });
        const preview = flagValue(input.dry_run);
        const rollout = await planRollout(this.planDeps(), input, reqId, { record: !preview });
        if (preview) {
            return previewOf(rollout);
        }
        const lease = await this.leases.tryAcquire(rolloutLeaseKey(rollout.uuid), `rollout ${rollout.uuid}`);
        if (!lease) {
            throw operationInProgress(`rollout ${rollout.uuid} is already held by another SAPI`);
        }
        rollout.owner = this.leases.owner;
        // Nothing to run (every item already at its target, or newer): done at once, and said so.
        const nothingToRun = !rollout.items.some((i) => i.state === 'pending');
        if (nothingToRun) {
            finish(rollout, rollout.items.some((i) => i.state === 'failed') ? 'failed' : 'succeeded');
            delete rollout.owner;
            rollout.warnings.push(`${rollout.created_at}: nothing to upgrade: ${nothingReason(rollout)}`);
        }
        try {
            await this.ctx.store.put(BUCKET, structuredClone(rollout), { etag: null });
        } catch (err) {
            await lease.release().catch(() => undefined);
            throw err;
        }
        this.log.info(
            {
                rollout: rollout.uuid,
                services: rollout.service_name,
                n: rollout.items.length,
                servers: rollout.totals.servers,
                concurrency: rollout.concurrency,
            },
            nothingToRun ? 'rollout planned with nothing to run' : 'rollout started',
        );
        if (nothingToRun) {
            await lease.release().catch(() => undefined);
            this.emit(rollout);
            await this.pruneFinished();
            return present(rollout);
        }
        this.launch(rollout, lease, reqId, false);
        return present(rollout);
    }

    async get(uuid: string): Promise<Rollout> {
        return present(await this.current(uuid));
    }

    /**
     * Summaries (no items), newest first, filtered by service and state,
     * `limit` at a time after `marker` (the uuid of the last one seen).
     * GET /rollouts/:uuid has the items.
     */
    async list(q: ListRolloutsQuery = {}): Promise<RolloutSummary[]> {
        const page = await this.ctx.store.find<Rollout>(BUCKET, q.state ? eq('state', q.state) : ALL);
        const all = page.items
            .map((s) => this.running.get(s.value.uuid)?.rollout ?? s.value)
            .filter((r) => q.state === undefined || r.state === q.state)
            .filter(
                (r) => q.service_uuid === undefined || r.service_uuid === q.service_uuid || (r.services ?? []).some((s) => s.service_uuid === q.service_uuid),
            )
            .sort((a, b) => b.created_at.localeCompare(a.created_at) || a.uuid.localeCompare(b.uuid));
        let from = 0;
        if (q.marker !== undefined) {
            const at = all.findIndex((r) => r.uuid === q.marker);
            if (at < 0) {
                throw invalidArgument(`marker ${q.marker} is not a listed rollout`);
            }
            from = at + 1;
        }
        return all.slice(from, q.limit === undefined ? undefined : from + q.limit).map(summaryOf);
    }

    /**
     * Finished rollouts are kept for `rollouts.keep_days` and at most
     * `rollouts.keep_finished` of them (the newest); older ones are deleted
     * as another one finishes. Running and paused ones are always kept.
     */
    private async pruneFinished(): Promise<void> {
        const keep = this.ctx.config.rollouts;
        try {
            const finished = (await this.ctx.store.find<Rollout>(BUCKET, oneOf('state', [...FINAL_STATES]))).items
                .map((s) => s.value)
                .sort((a, b) => (b.finished_at ?? b.created_at).localeCompare(a.finished_at ?? a.created_at));
            const cutoff = Date.now() - keep.keep_days * 24 * 3600 * 1000;
            const old = finished.filter((r, i) => i >= keep.keep_finished || Date.parse(r.finished_at ?? r.created_at) < cutoff);
            for (const r of old) {
                await this.ctx.store.del(BUCKET, r.uuid).catch(() => undefined);
            }
            if (old.length > 0) {
                this.log.info({ deleted: old.length, kept: finished.length - old.length }, 'old finished rollouts deleted');
            }
        } catch (err) {
            this.log.warn({ err }, 'could not prune old finished rollouts');
        }
    }

    /** Cancel: pending items are not started; running ones finish. A finished rollout is returned as it is. */
    async cancel(uuid: string): Promise<Rollout> {
        const live = await this.settled(uuid);
        if (live) {
            live.cancel = true;
            cancelPending(live.rollout);
            recount(live.rollout);
            await this.persist(live.rollout, true);
            this.emit(live.rollout);
            return present(live.rollout);
        }
        const stored = await this.current(uuid);
        if (FINAL_STATES.includes(stored.state)) {
            return present(stored);
        }
        return this.withLease(uuid, 'cancel', async (r) => {
            if (FINAL_STATES.includes(r.state)) {
                return r;
            }
            // Nobody drives it: items it had running were interrupted and will not be started again.
            for (const item of r.items) {
                if (item.state === 'running' || item.state === 'stalled') {
                    item.state = 'canceled';
                }
            }
            cancelPending(r);
            finish(r, 'canceled');
            recount(r);
            this.clearAutoPromote(uuid);
            await this.persist(r, true);
            this.emit(r);
            return r;
        });
    }

    /** Paused for canaries → running on every server. */
    async promote(uuid: string): Promise<Rollout> {
        await this.settled(uuid);
        const live = this.running.get(uuid);
        if (live) {
            throw wrongState(live.rollout, 'promoted', 'only a rollout paused for its canaries can be promoted');
        }
        return this.continuePaused(
            uuid,
            'promoted',
            (r) => r.state === 'paused' && r.paused_reason === 'canary',
            'only a rollout paused for its canaries can be promoted',
        );
    }

    /** Paused (for failures, or for canaries: that promotes) → running. */
    async resume(uuid: string): Promise<Rollout> {
        await this.settled(uuid);
        const live = this.running.get(uuid);
        if (live) {
            throw wrongState(live.rollout, 'resumed', 'only a paused rollout can be resumed');
        }
        return this.continuePaused(uuid, 'resumed', (r) => r.state === 'paused', 'only a paused rollout can be resumed');
    }

    /**
     * Put back each succeeded item's from_image, by the same per-server rules.
     * A running rollout starts no more items and reverts once its running ones end.
     */
    async revert(uuid: string, reqId: string): Promise<Rollout> {
        const live = await this.settled(uuid);
        const why = 'a rollout can be reverted while running, paused, or once succeeded, failed or canceled, and only once';
        if (live) {
            const r = live.rollout;
            if (r.state !== 'running') {
                throw wrongState(r, 'reverted', why);
            }
            live.halt = 'revert';
            cancelPending(r);
            r.state = 'reverting';
            delete r.paused_reason;
            recount(r);
            await this.persist(r, true);
            this.emit(r);
            return present(r);
        }
        const stored = await this.current(uuid);
        if (!revertable(stored)) {
            throw wrongState(stored, 'reverted', why);
        }
        return this.withLease(uuid, 'revert', async (r, lease) => {
            // A running rollout nobody drives waits for its takeover first.
            if (!revertable(r) || r.state === 'running') {
                throw wrongState(r, 'reverted', why);
            }
            await this.beginRevert(r, reqId);
            return this.launch(r, lease, reqId, false).rollout;
        });
    }

    /** At start-up: resume rollouts a restart interrupted (those nobody holds), then look again every ttl/2. */
    async resumeAll(): Promise<number> {
        if (!this.scanTimer && !this.stopped) {
            this.scanTimer = setInterval(
                () => {
                    void this.scan(false).catch((err: unknown) => this.log.error({ err }, 'rollout takeover scan failed'));
                },
                Math.max(1, Math.floor(this.leases.ttlMs / 2)),
            );
            this.scanTimer.unref();
        }
        return this.scan(true);
    }

    /** Resolves when every running rollout has finished or paused (tests, shutdown). */
    async idle(): Promise<void> {
        while (this.running.size > 0) {
            await Promise.all([...this.running.values()].map((r) => r.done));
        }
    }

    /**
     * Shutting down: no more scans or automatic promotions, and no item
     * starts; running ones end; the rollouts stay as they are in the store
     * (a restart, or another SAPI once the leases are free, resumes them).
     */
    stop(): void {
        this.stopped = true;
        if (this.scanTimer) {
            clearInterval(this.scanTimer);
            this.scanTimer = null;
        }
        for (const t of this.autoPromotions.values()) {
            clearTimeout(t);
        }
        this.autoPromotions.clear();
    }

    // ---- helpers of the API

    private planDeps(): PlanDeps {
        if (this.ctx.mode.current !== 'full') {
            throw invalidArgument('rollouts deploy agents and need full mode');
        }
        const agent = this.ctx.deployers.agent;
        if (!agent) {
            throw noDeployer('agent');
        }
        return { ctx: this.ctx, log: this.log, agent, cnapi: this.cnapi, imgapi: this.imgapi };
    }

    private async current(uuid: string): Promise<Rollout> {
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

    /** The live entry, once a driver that is pausing or ending has let go (then null). */
    private async settled(uuid: string): Promise<Live | null> {
        for (;;) {
            const live = this.running.get(uuid);
            if (!live) {
                return null;
            }
            if (ACTIVE_STATES.includes(live.rollout.state) && !live.cancel && !live.halt) {
                return live;
            }
            if (live.rollout.state === 'reverting' && live.halt === 'revert') {
                return live;
            }
            await live.done;
        }
    }

    /**
     * Act on a rollout nobody here drives: take its lease (409 when another
     * SAPI drives it), read it again, and act; the lease is given back
     * unless `fn` launched a driver with it.
     */
    private async withLease(uuid: string, what: string, fn: (r: Rollout, lease: LeaseHandle) => Promise<Rollout>): Promise<Rollout> {
        const lease = await this.leases.tryAcquire(rolloutLeaseKey(uuid), `${what} of rollout ${uuid}`);
        if (!lease) {
            const holder = await this.leases.holder(rolloutLeaseKey(uuid)).catch(() => null);
            throw operationInProgress(
                `rollout ${uuid} is driven by another SAPI${holder ? ` (${holder.owner}: ${holder.operation})` : ''}; try again later or there`,
            );
        }
        let launched = false;
        try {
            const stored = await this.ctx.store.get<Rollout>(BUCKET, uuid);
            if (!stored) {
                throw noSuch('rollout', uuid);
            }
            const out = await fn(stored.value, lease);
            launched = this.running.get(uuid)?.lease === lease;
            return present(out);
        } finally {
            if (!launched) {
                await lease.release().catch((err: unknown) => this.log.warn({ err, rollout: uuid }, 'could not release a rollout lease'));
            }
        }
    }

    private async continuePaused(uuid: string, verb: string, ok: (r: Rollout) => boolean, why: string): Promise<Rollout> {
        const stored = await this.current(uuid);
        if (!ok(stored)) {
            throw wrongState(stored, verb, why);
        }
        return this.withLease(uuid, verb, async (r, lease) => {
            if (!ok(r)) {
                throw wrongState(r, verb, why);
            }
            const now = new Date().toISOString();
            if (r.paused_reason === 'canary') {
                r.promoted_at = now;
            } else {
                // max_failures counts again from here.
                r.failures_baseline = r.items.filter((i) => i.phase !== 'revert' && i.state === 'failed').length;
            }
            r.warnings.push(`${now}: ${verb} (was paused: ${String(r.paused_reason)})`);
            r.state = 'running';
            delete r.paused_reason;
            delete r.paused_at;
            delete r.auto_promote_at;
            this.clearAutoPromote(uuid);
            this.log.info({ rollout: uuid }, `rollout ${verb}`);
            return this.launch(r, lease, `${verb}-${uuid}`, false).rollout;
        });
    }

    // ---- takeover

    /** Take over running/reverting rollouts whose lease is free; arm automatic promotions of paused ones. */
    private scan(startup: boolean): Promise<number> {
        if (this.scanning) {
            return this.scanning;
        }
        this.scanning = this.scanOnce(startup).finally(() => {
            this.scanning = null;
        });
        return this.scanning;
    }

    private async scanOnce(startup: boolean): Promise<number> {
        if (this.stopped) {
            return 0;
        }
        const page = await this.ctx.store.find<Rollout>(BUCKET, oneOf('state', ['running', 'reverting', 'paused']));
        let n = 0;
        for (const { value: r } of page.items) {
            if (this.stopped || this.running.has(r.uuid)) {
                continue;
            }
            if (r.state === 'paused') {
                if (r.auto_promote_at !== undefined) {
                    this.armAutoPromote(r);
                }
                continue;
            }
            const lease = await this.leases.tryAcquire(rolloutLeaseKey(r.uuid), `rollout ${r.uuid}`);
            if (!lease) {
                continue; // its owner is alive
            }
            try {
                const fresh = (await this.ctx.store.get<Rollout>(BUCKET, r.uuid))?.value;
                if (!fresh || !ACTIVE_STATES.includes(fresh.state) || this.running.has(r.uuid)) {
                    await lease.release();
                    continue;
                }
                await this.takeOver(fresh, lease, startup);
                n += 1;
            } catch (err) {
                await lease.release().catch(() => undefined);
                this.log.error({ err, rollout: r.uuid }, 'could not resume a rollout');
            }
        }
        return n;
    }

    private async takeOver(r: Rollout, lease: LeaseHandle, startup: boolean): Promise<void> {
        const interrupted = r.items.filter((i) => i.state === 'running' || i.state === 'stalled');
        for (const item of interrupted) {
            item.state = 'pending';
        }
        const previous = r.owner;
        r.resumed_at = new Date().toISOString();
        r.warnings.push(
            startup
                ? `${r.resumed_at}: resumed after a restart; ${interrupted.length} interrupted item(s) re-run`
                : `${r.resumed_at}: taken over from ${previous ?? 'a SAPI'} whose lease expired (resumed after a restart of that SAPI, or its loss); ${interrupted.length} interrupted item(s) re-run`,
        );
        // Items that finished unseen (their task completed as SAPI went down) are not run again.
        try {
            await settleItems(this.planDeps(), r, r.items, `resume-${r.uuid}`, { checkReady: false, resumed: true });
        } catch (err) {
            this.log.warn({ err, rollout: r.uuid }, 'could not check interrupted items against server.agents');
        }
        recount(r);
        this.log.warn({ rollout: r.uuid, rerun: interrupted.length, previous }, 'resuming an interrupted rollout');
        await this.persist(r, true);
        this.launch(r, lease, `resume-${r.uuid}`, true);
    }

    private armAutoPromote(r: Rollout): void {
        if (this.stopped || r.auto_promote_at === undefined || this.autoPromotions.has(r.uuid)) {
            return;
        }
        const uuid = r.uuid;
        const timer = setTimeout(
            () => {
                this.autoPromotions.delete(uuid);
                this.promote(uuid).then(
                    () => this.log.info({ rollout: uuid }, 'canaries succeeded: promoted automatically'),
                    (err: unknown) => this.log.info({ err, rollout: uuid }, 'automatic promotion not done'),
                );
            },
            Math.max(0, Date.parse(r.auto_promote_at) - Date.now()),
        );
        timer.unref();
        this.autoPromotions.set(uuid, timer);
    }

    private clearAutoPromote(uuid: string): void {
        const t = this.autoPromotions.get(uuid);
        if (t) {
            clearTimeout(t);
            this.autoPromotions.delete(uuid);
        }
    }

    // ---- execution

    private launch(rollout: Rollout, lease: LeaseHandle, reqId: string, resumed: boolean): Live {
        rollout.owner = this.leases.owner;
        const entry: Live = {
            rollout,
            lease,
            stopKeepAlive: this.leases.keepAlive(lease),
            cancel: false,
            halt: null,
            resumed,
            durations: { sum: 0, n: 0 },
            done: Promise.resolve(),
        };
        for (const i of rollout.items) {
            if (i.state === 'succeeded' && i.duration_ms !== undefined) {
                entry.durations.sum += i.duration_ms;
                entry.durations.n += 1;
            }
        }
        this.running.set(rollout.uuid, entry);
        entry.done = this.drive(entry, reqId).catch((err: unknown) => {
            this.log.error({ err, rollout: rollout.uuid }, 'rollout runner crashed');
        });
        return entry;
    }

    /** Run items until the rollout ends or pauses (or its lease is lost), then let go of it. */
    private async drive(entry: Live, reqId: string): Promise<void> {
        const r = entry.rollout;
        const lost = (): boolean => entry.lease.lost.aborted;
        try {
            for (;;) {
                await this.runPending(entry, reqId);
                if (lost() || this.stopped) {
                    return;
                }
                if (entry.cancel) {
                    finish(r, 'canceled');
                    return;
                }
                if (entry.halt === 'revert') {
                    entry.halt = null;
                    await this.beginRevert(r, reqId);
                    continue;
                }
                if (r.state === 'reverting') {
                    finish(r, r.items.some((i) => i.phase === 'revert' && i.state === 'failed') ? 'failed' : 'reverted');
                    return;
                }
                if (entry.halt === 'failures') {
                    entry.halt = null;
                    pause(r, 'failures');
                    r.warnings.push(`${String(r.paused_at)}: paused: ${failuresCounted(r)} failed item(s) reached max_failures ${String(r.max_failures)}`);
                    return;
                }
                if (canaryPhase(r) && r.items.some((i) => i.state === 'pending' && i.phase === 'main')) {
                    pause(r, 'canary');
                    const canaries = r.items.filter((i) => i.phase === 'canary');
                    if (r.auto_promote_after_ms !== undefined && canaries.every((i) => i.state === 'succeeded' || i.state === 'skipped')) {
                        r.auto_promote_at = new Date(Date.now() + r.auto_promote_after_ms).toISOString();
                    }
                    return;
                }
                finish(r, r.items.some((i) => i.phase !== 'revert' && i.state === 'failed') ? 'failed' : 'succeeded');
                return;
            }
        } finally {
            entry.stopKeepAlive();
            if (lost()) {
                this.log.warn({ rollout: r.uuid }, 'rollout lease lost: no more items started here (another SAPI takes it over)');
                this.running.delete(r.uuid);
                this.flushes.delete(r.uuid);
            } else {
                if (!ACTIVE_STATES.includes(r.state)) {
                    delete r.owner;
                }
                recount(r);
                await this.persist(r, true);
                this.running.delete(r.uuid);
                await entry.lease.release().catch((err: unknown) => this.log.warn({ err, rollout: r.uuid }, 'could not release a rollout lease'));
                this.log.info(
                    { rollout: r.uuid, state: r.state, paused_reason: r.paused_reason, counts: r.counts, average_ms: r.average_ms },
                    FINAL_STATES.includes(r.state) ? 'rollout finished' : `rollout ${r.state}`,
                );
                this.emit(r);
                if (r.state === 'paused' && r.auto_promote_at !== undefined) {
                    this.armAutoPromote(r);
                }
                if (FINAL_STATES.includes(r.state)) {
                    await this.pruneFinished();
                }
            }
        }
    }

    /**
     * Pending items of the current phase: up to `concurrency` servers at a
     * time, each server's items one after another. Returns once none is
     * left, or when the rollout must start no more (cancel, pause, revert,
     * lost lease, shutdown) and the running ones have ended.
     */
    private async runPending(entry: Live, reqId: string): Promise<void> {
        const r = entry.rollout;
        const phases = r.state === 'reverting' ? ['revert'] : canaryPhase(r) ? ['canary'] : ['canary', 'main'];
        const halted = (): boolean => entry.cancel || entry.halt !== null || entry.lease.lost.aborted || this.stopped;
        if (r.state === 'running') {
            this.checkFailures(entry);
        }
        const groups = new Map<string, RolloutItem[]>();
        for (const item of r.items) {
            if (item.state === 'pending' && phases.includes(item.phase ?? 'main')) {
                const g = groups.get(item.server_uuid);
                if (g) g.push(item);
                else groups.set(item.server_uuid, [item]);
            }
        }
        const queue = [...groups.values()];
        const watchdog = setInterval(() => this.checkStalls(r), 250);
        try {
            const worker = async (): Promise<void> => {
                for (;;) {
                    const group = halted() ? undefined : queue.shift();
                    if (!group) {
                        return;
                    }
                    for (const item of group) {
                        if (halted()) {
                            break;
                        }
                        if (item.state !== 'pending') {
                            continue;
                        }
                        await this.runItem(entry, item, reqId);
                        // (runItem changed the state)
                        if ((item.state as RolloutItem['state']) === 'failed' && r.state === 'running') {
                            this.checkFailures(entry);
                        }
                    }
                }
            };
            await Promise.all(Array.from({ length: Math.min(r.concurrency, Math.max(queue.length, 1)) }, worker));
        } finally {
            clearInterval(watchdog);
        }
    }

    private checkFailures(entry: Live): void {
        const limit = failureLimit(entry.rollout);
        if (limit !== undefined && entry.halt === null && failuresCounted(entry.rollout) >= limit) {
            entry.halt = 'failures';
        }
    }

    /** Switch to reverting: one revert item per succeeded upgrade whose from_image differs, checked like a start. */
    private async beginRevert(r: Rollout, reqId: string): Promise<void> {
        const now = new Date().toISOString();
        cancelPending(r);
        // Upgrades go back to their previous image; installs are uninstalled
        // (adoptions installed nothing and are left as they are).
        const back: RolloutItem[] = r.items
            .filter(
                (i) =>
                    i.phase !== 'revert' &&
                    i.state === 'succeeded' &&
                    (i.action === 'install' || ((i.action ?? 'upgrade') === 'upgrade' && i.from_image !== undefined && i.from_image !== i.to_image)),
            )
            .map((i) => ({
                instance_uuid: i.instance_uuid,
                server_uuid: i.server_uuid,
                service_uuid: i.service_uuid,
                service_name: i.service_name,
                ...(i.action === 'install'
                    ? { action: 'uninstall' as const, to_image: i.to_image }
                    : { from_image: i.to_image, to_image: i.from_image as string }),
                phase: 'revert' as const,
                state: 'pending' as const,
                attempts: 0,
            }));
        r.state = 'reverting';
        r.reverted_at = now;
        delete r.paused_reason;
        delete r.paused_at;
        delete r.auto_promote_at;
        delete r.finished_at;
        this.clearAutoPromote(r.uuid);
        r.warnings.push(`${now}: reverting ${back.length} item(s): upgrades back to their previous image, installs uninstalled`);
        this.log.warn({ rollout: r.uuid, n: back.length }, 'reverting a rollout');
        const deps = this.planDeps();
        // Each previous image is checked once (it may have been removed from IMGAPI since).
        const images = new Map<string, RolloutItem>();
        for (const item of back) if (item.action !== 'uninstall') images.set(`${item.service_uuid}/${item.to_image}`, item);
        for (const item of images.values()) {
            let err: string | undefined;
            try {
                const svc = await find<Service>(this.ctx.store, 'service', item.service_uuid);
                if (svc) await deps.agent.checkImage?.({ reqId, log: this.log, async: false }, item.to_image, svc.value);
            } catch (e) {
                err = (e as Error).message;
            }
            if (err !== undefined) {
                for (const i of back) {
                    if (i.action !== 'uninstall' && i.service_uuid === item.service_uuid && i.to_image === item.to_image) {
                        i.state = 'failed';
                        i.error = err;
                        i.finished_at = now;
                    }
                }
            }
        }
        // A revert is the one flow that goes back to older images.
        await settleItems(deps, r, back, reqId, { checkReady: true, resumed: false, allowDowngrade: true });
        r.items.push(...back);
        recount(r);
        await this.persist(r, true);
        this.emit(r);
    }

    private async runItem(entry: Live, item: RolloutItem, reqId: string): Promise<void> {
        const r = entry.rollout;
        item.state = 'running';
        item.attempts += 1;
        const start = Date.now();
        item.started_at = new Date(start).toISOString();
        delete item.error;
        delete item.finished_at;
        delete item.duration_ms;
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
                    await untilAborted(this.act(item, info, entry.resumed, timeout.signal), timeout.signal);
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
            entry.durations.sum += item.duration_ms;
            entry.durations.n += 1;
            r.average_ms = Math.round(entry.durations.sum / entry.durations.n);
        }
        recount(r);
        void this.persist(r);
        this.emit(r);
    }

    /** What an item does, through the model as the API would (the agent deployer). */
    private async act(item: RolloutItem, info: ReqInfo, resumed: boolean, signal: AbortSignal): Promise<void> {
        const action = item.action ?? 'upgrade';
        if (action === 'upgrade') {
            const opts = { imageChecked: true, serverChecked: !resumed, signal };
            await upgradeInstance(this.ctx, info, item.instance_uuid, { image_uuid: item.to_image }, opts);
        } else if (action === 'install' || action === 'adopt') {
            // An install records the instance as the agent reports itself (its
            // uuid may be the agent's own: the item follows it, so a revert
            // uninstalls the right one); an adoption records what
            // server.agents shows, with no task.
            const made = await createInstance(this.ctx, info, {
                service_uuid: item.service_uuid,
                uuid: item.instance_uuid,
                ...(action === 'adopt' ? { exists: true } : {}),
                params: { server_uuid: item.server_uuid, image_uuid: item.to_image },
            });
            item.instance_uuid = made.instance.uuid;
        } else {
            await deleteInstance(this.ctx, info, item.instance_uuid);
        }
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
     * restart re-checks items finished in the last interval against
     * CNAPI's server.agents, and runs again only those not at their image.
     * Nothing is written once the lease is lost (the new owner writes).
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
                if (this.running.get(r.uuid)?.lease.lost.aborted) {
                    return;
                }
                try {
                    retotal(r);
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

export interface ListRolloutsQuery {
    service_uuid?: string | undefined;
    state?: RolloutState | undefined;
    limit?: number | undefined;
    marker?: string | undefined;
}

function summaryOf(r: Rollout): RolloutSummary {
    retotal(r);
    const { items: _items, servers: _servers, ...summary } = r;
    return summary;
}

/** What the API answers: the rollout with its items also grouped by server. */
function present(r: Rollout): Rollout {
    retotal(r);
    return { ...r, servers: serverView(r.items) };
}

function canaryPhase(r: Rollout): boolean {
    return r.canary !== undefined && r.promoted_at === undefined;
}

function cancelPending(r: Rollout): void {
    for (const item of r.items) {
        if (item.state === 'pending') {
            item.state = 'canceled';
        }
    }
}

function pause(r: Rollout, reason: PausedReason): void {
    r.state = 'paused';
    r.paused_reason = reason;
    r.paused_at = new Date().toISOString();
}

function finish(r: Rollout, state: RolloutState): void {
    r.state = state;
    r.finished_at = new Date().toISOString();
    delete r.paused_reason;
    delete r.paused_at;
    delete r.auto_promote_at;
}

function revertable(r: Rollout): boolean {
    return r.state === 'running' || r.state === 'paused' || r.state === 'succeeded' || r.state === 'failed' || r.state === 'canceled';
}

function wrongState(r: Rollout, verb: string, why: string): Error {
    const state = r.state === 'paused' ? `paused (${String(r.paused_reason)})` : r.state;
    return invalidArgument(`rollout ${r.uuid} is ${state} and cannot be ${verb}: ${why}`);
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
