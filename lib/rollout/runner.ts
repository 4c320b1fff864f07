// RolloutManager: starts, runs, persists, pauses, reverts and resumes
// agent rollouts. A thin shell over its parts: the plan (plan.ts), the
// state machine every state change goes through (machine.ts), the executor
// that runs items (executor.ts), the throttled persister (persister.ts),
// the takeover scanner and automatic promotions (takeover.ts), all on one
// injected clock (clock.ts).
//
// The SAPI driving a rollout holds its lease `rollout/<uuid>` and keeps it
// alive; if the lease is lost it starts no more items. Every SAPI looks,
// every ttl/2, for running or reverting rollouts nobody holds and takes
// them over, never repeating finished items. A paused rollout is driven by
// nobody: promote, resume, revert and cancel take its lease to act on it.

import type Logger from 'bunyan';

import type { CnapiClient } from '../clients/cnapi.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import { invalidArgument, noSuch, operationInProgress } from '../errors.js';
import type { Ctx, ReqInfo } from '../model/context.js';
import type { LeaseHandle, Leases } from '../leases/leases.js';
import { flagValue } from '../model/validate.js';
import { BUCKETS } from '../stor/buckets.js';
import { act } from './actions.js';
import { systemClock, type Clock } from './clock.js';
import { durationsOf, Executor } from './executor.js';
import { planDepsOf, type PlanDeps, type StartRollout } from './input.js';
import { applyItemEffects, applyStatus, phasesToRun, refused, steady, step, type Intent, type RolloutEvent, type Step } from './machine.js';
import { Persister } from './persister.js';
import { planRollout } from './plan.js';
import { checkRevert, revertItems } from './revert.js';
import { settleItems } from './settle.js';
import { listRollouts, pruneFinished, type ListRolloutsQuery } from './stored.js';
import { AutoPromotions, rolloutLeaseKey, TakeoverScanner } from './takeover.js';
import { ACTIVE_STATES, FINAL_STATES, type Rollout, type RolloutPreview, type RolloutSummary } from './types.js';
import { present, previewOf, recount, retotal } from './views.js';

export { rolloutInput, type StartRollout } from './input.js';
export { rolloutLeaseKey } from './takeover.js';
export type { ListRolloutsQuery } from './stored.js';
export type { RolloutPreview, RolloutSummary } from './types.js';

const BUCKET = BUCKETS.rollouts.name;

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
    /** Time and timers (default: the system's; tests pass a ManualClock). */
    clock?: Clock;
}

/** What this process's driver of a rollout shows of itself (diagnostics, tests). */
export interface DriverView {
    /** The lease was lost: the driver starts no more items and writes nothing more. */
    readonly leaseLost: boolean;
    /** Resolves once the driver has let go of the rollout (paused, finished, lease lost or shut down). */
    readonly done: Promise<void>;
}

/** A rollout this process drives. */
interface Live {
    rollout: Rollout;
    lease: LeaseHandle;
    stopKeepAlive: () => void;
    intent: Intent;
    /** Taken over after a restart (servers are checked again per item). */
    resumed: boolean;
    /** Durations of the succeeded items, for average_ms. */
    durations: { sum: number; n: number };
    done: Promise<void>;
}

export class RolloutManager {
    private readonly running = new Map<string, Live>();
    private readonly ctx: Ctx;
    private readonly leases: Leases;
    private readonly log: Logger;
    private readonly clock: Clock;
    private readonly executor: Executor;
    private readonly persister: Persister;
    private readonly scanner: TakeoverScanner;
    private readonly promotions: AutoPromotions;
    private stopped = false;

    constructor(private readonly deps: RolloutManagerDeps) {
        this.ctx = deps.ctx;
        this.log = deps.ctx.log.child({ component: 'rollout' });
        this.leases = deps.leases;
        const clock = (this.clock = deps.clock ?? systemClock);
        this.executor = new Executor({ clock, log: this.log, changed: (r) => this.changed(r) });
        this.persister = new Persister({
            clock,
            log: this.log,
            fenced: (uuid) => this.running.get(uuid)?.lease.lost.aborted === true,
            write: async (r) => {
                retotal(r);
                await this.ctx.store.put(BUCKET, structuredClone(r));
            },
        });
        this.scanner = new TakeoverScanner({
            clock,
            log: this.log,
            store: this.ctx.store,
            leases: this.leases,
            driven: (uuid) => this.running.has(uuid),
            stopped: () => this.stopped,
            paused: (r) => this.promotions.arm(r),
            takeOver: (r, lease, startup) => this.takeOver(r, lease, startup),
        });
        this.promotions = new AutoPromotions(clock, (uuid) => {
            this.promote(uuid).then(
                () => this.log.info({ rollout: uuid }, 'canaries succeeded: promoted automatically'),
                (err: unknown) => this.log.info({ err, rollout: uuid }, 'automatic promotion not done'),
            );
        });
    }

    // ---- API

    /**
     * Plan a rollout and start it; with `dry_run`, answer the plan without
     * starting anything (the same planner decides both).
     */
    async start(input: StartRollout, reqId: string): Promise<Rollout | RolloutPreview> {
        // `input` was checked once, where it came in (the route declares rolloutInput as its input).
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
        const nothingToRun = this.transition(rollout, null, { type: 'planned' }).effects.includes('release');
        if (nothingToRun) {
            delete rollout.owner;
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
            await pruneFinished(this.ctx, this.log, this.clock);
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
        return listRollouts(this.ctx.store, q, (uuid) => this.running.get(uuid)?.rollout);
    }

    /** Cancel: pending items are not started; running ones finish. A finished rollout is returned as it is. */
    async cancel(uuid: string): Promise<Rollout> {
        const live = await this.settled(uuid);
        if (live) {
            this.transition(live.rollout, live, { type: 'cancel' });
            await this.commit(live.rollout);
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
            this.transition(r, null, { type: 'cancel' });
            await this.commit(r);
            return r;
        });
    }

    /** Paused for canaries → running on every server. */
    async promote(uuid: string): Promise<Rollout> {
        return this.continuePaused(uuid, { type: 'promote' });
    }

    /** Paused (for failures, or for canaries: that promotes) → running. */
    async resume(uuid: string): Promise<Rollout> {
        return this.continuePaused(uuid, { type: 'resume' });
    }

    /**
     * Put back each succeeded item's from_image, by the same per-server rules.
     * A running rollout starts no more items and reverts once its running ones end.
     */
    async revert(uuid: string, reqId: string): Promise<Rollout> {
        const live = await this.settled(uuid);
        if (live) {
            this.transition(live.rollout, live, { type: 'revert' });
            await this.commit(live.rollout);
            return present(live.rollout);
        }
        // A running rollout nobody here drives is refused under its lease (409 while another SAPI drives it).
        const stored = await this.current(uuid);
        if (stored.state !== 'running') {
            this.check(stored, { type: 'revert' });
        }
        return this.withLease(uuid, 'revert', async (r, lease) => {
            this.transition(r, null, { type: 'revert' });
            await this.beginRevert(r, null, reqId);
            return this.launch(r, lease, reqId, false).rollout;
        });
    }

    /** At start-up: resume rollouts a restart interrupted (those nobody holds), then look again every ttl/2. */
    async resumeAll(): Promise<number> {
        return this.scanner.start();
    }

    /** Resolves when every running rollout has finished or paused (tests, shutdown). */
    async idle(): Promise<void> {
        while (this.running.size > 0) {
            await Promise.all([...this.running.values()].map((r) => r.done));
        }
    }

    /** This process's driver of the rollout, while it drives it. */
    driving(uuid: string): DriverView | undefined {
        const live = this.running.get(uuid);
        return live && { leaseLost: live.lease.lost.aborted, done: live.done };
    }

    /**
     * Shutting down: no more scans or automatic promotions, and no item
     * starts; running ones end; the rollouts stay as they are in the store
     * (a restart, or another SAPI once the leases are free, resumes them).
     */
    stop(): void {
        this.stopped = true;
        this.scanner.stop();
        this.promotions.stop();
    }

    // ---- state changes

    /** The machine's answer to `ev`, or its refusal thrown as a 409. */
    private check(r: Rollout, ev: RolloutEvent, live: Live | null = null): Step {
        const out = step(r, live?.intent ?? null, ev, this.clock.now());
        if (refused(out)) {
            throw invalidArgument(out.refused);
        }
        return out;
    }

    /** Take the machine's step: its state and warnings into the rollout, and its effects on items and timers. */
    private transition(r: Rollout, live: Live | null, ev: RolloutEvent): Step {
        const out = this.check(r, ev, live);
        applyStatus(r, out.status);
        if (live && out.intent) {
            live.intent = out.intent;
        }
        r.warnings.push(...out.warnings);
        applyItemEffects(r, out.effects);
        if (out.effects.includes('disarm-auto-promote')) {
            this.promotions.disarm(r.uuid);
        }
        return out;
    }

    /** After a command: counted, written at once, told. */
    private async commit(r: Rollout): Promise<void> {
        recount(r);
        await this.persister.persist(r, true);
        this.emit(r);
    }

    private async continuePaused(uuid: string, ev: { type: 'promote' | 'resume' }): Promise<Rollout> {
        await this.settled(uuid);
        const live = this.running.get(uuid);
        if (live) {
            this.check(live.rollout, ev, live);
        }
        this.check(await this.current(uuid), ev);
        const verb = ev.type === 'promote' ? 'promoted' : 'resumed';
        return this.withLease(uuid, verb, async (r, lease) => {
            this.transition(r, null, ev);
            this.log.info({ rollout: uuid }, `rollout ${verb}`);
            return this.launch(r, lease, `${verb}-${uuid}`, false).rollout;
        });
    }

    /** Switch to reverting: the revert items, checked like a start, added and written. */
    private async beginRevert(r: Rollout, live: Live | null, reqId: string): Promise<void> {
        const back = revertItems(r);
        this.transition(r, live, { type: 'revert-planned', items: back.length });
        this.log.warn({ rollout: r.uuid, n: back.length }, 'reverting a rollout');
        await checkRevert(this.planDeps(), r, back, reqId, r.reverted_at ?? new Date(this.clock.now()).toISOString());
        r.items.push(...back);
        await this.commit(r);
    }

    private async takeOver(r: Rollout, lease: LeaseHandle, startup: boolean): Promise<void> {
        const interrupted = r.items.filter((i) => i.state === 'running' || i.state === 'stalled').length;
        const previous = r.owner;
        this.transition(r, null, { type: 'taken-over', startup, interrupted, previous });
        // Items that finished unseen (their task completed as SAPI went down) are not run again.
        try {
            await settleItems(this.planDeps(), r, r.items, `resume-${r.uuid}`, { checkReady: false, resumed: true });
        } catch (err) {
            this.log.warn({ err, rollout: r.uuid }, 'could not check interrupted items against server.agents');
        }
        recount(r);
        this.log.warn({ rollout: r.uuid, rerun: interrupted, previous }, 'resuming an interrupted rollout');
        await this.persister.persist(r, true);
        this.launch(r, lease, `resume-${r.uuid}`, true);
    }

    // ---- driving

    private launch(rollout: Rollout, lease: LeaseHandle, reqId: string, resumed: boolean): Live {
        rollout.owner = this.leases.owner;
        const entry: Live = {
            rollout,
            lease,
            stopKeepAlive: this.leases.keepAlive(lease),
            intent: { cancel: false, halt: null },
            resumed,
            durations: durationsOf(rollout),
            done: Promise.resolve(),
        };
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
        const info = (instance: string): ReqInfo => ({ v2: true, reqId: `${reqId}/${instance}`, log: this.log });
        try {
            for (;;) {
                const phases = phasesToRun(r);
                this.transition(r, entry, { type: 'failures-check' });
                await this.executor.run({
                    rollout: r,
                    phases,
                    halted: () => entry.intent.cancel || entry.intent.halt !== null || lost() || this.stopped,
                    failed: () => void this.transition(r, entry, { type: 'failures-check' }),
                    act: (item, signal) => act(this.ctx, item, info(item.instance_uuid), entry.resumed, signal),
                    durations: entry.durations,
                });
                if (lost() || this.stopped) {
                    return;
                }
                if (this.transition(r, entry, { type: 'drained' }).effects.includes('plan-revert')) {
                    await this.beginRevert(r, entry, reqId);
                    continue;
                }
                return;
            }
        } finally {
            await this.letGo(entry);
        }
    }

    private async letGo(entry: Live): Promise<void> {
        const r = entry.rollout;
        entry.stopKeepAlive();
        if (entry.lease.lost.aborted) {
            this.log.warn({ rollout: r.uuid }, 'rollout lease lost: no more items started here (another SAPI takes it over)');
            this.running.delete(r.uuid);
            this.persister.forget(r.uuid);
            return;
        }
        if (!ACTIVE_STATES.includes(r.state)) {
            delete r.owner;
        }
        recount(r);
        await this.persister.persist(r, true);
        this.running.delete(r.uuid);
        await entry.lease.release().catch((err: unknown) => this.log.warn({ err, rollout: r.uuid }, 'could not release a rollout lease'));
        this.log.info(
            { rollout: r.uuid, state: r.state, paused_reason: r.paused_reason, counts: r.counts, average_ms: r.average_ms },
            FINAL_STATES.includes(r.state) ? 'rollout finished' : `rollout ${r.state}`,
        );
        this.emit(r);
        if (r.state === 'paused' && r.auto_promote_at !== undefined) {
            this.promotions.arm(r);
        }
        if (FINAL_STATES.includes(r.state)) {
            await pruneFinished(this.ctx, this.log, this.clock);
        }
    }

    // ---- helpers

    /** An item changed: counted, written soon, told. */
    private changed(r: Rollout): void {
        recount(r);
        void this.persister.persist(r);
        this.emit(r);
    }

    private emit(r: Rollout): void {
        this.deps.onProgress?.(r);
    }

    private planDeps(): PlanDeps {
        return planDepsOf(this.ctx, this.log, this.deps.cnapi, this.deps.imgapi, this.clock);
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
            if (steady(live.rollout, live.intent)) {
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
}
