// The rollout-level state machine: from a rollout (read, never changed)
// and what happened, the rollout's next state and what the engine must do
// about it. Pure: the time is given, nothing is written, no timer is set.
// Every change of a rollout's state, its pause, promotion, revert, takeover
// and finish times goes through `step`; what it means for the items is
// said by its effects (applyItemEffects), and the rest of the items'
// changes are the executor's.
//
//   running ─ canaries done ──────────▶ paused (canary) ─ promote/resume ─▶ running
//   running ─ max_failures reached ───▶ paused (failures) ─ resume ───────▶ running
//   running ─ all done ───────────────▶ succeeded | failed
//   running | paused | finished ─ revert ─▶ reverting ─ all done ─▶ reverted | failed
//   any but finished ─ cancel ────────▶ canceled

import type { PausedReason, Rollout, RolloutState, ItemPhase } from './types.js';
import { ACTIVE_STATES, FINAL_STATES } from './types.js';
import { failureLimit, failuresCounted, nothingReason } from './views.js';

/** Why the driver in this process starts no more items: a pause for failures, or a revert once the running ones end. */
export type Halt = 'failures' | 'revert' | null;

/** What this process's driver of a rollout has been asked to do (null: nobody here drives it). */
export interface Intent {
    cancel: boolean;
    halt: Halt;
}

/** The rollout-level fields the machine owns. */
export const STATUS_KEYS = [
    'state',
    'paused_reason',
    'paused_at',
    'auto_promote_at',
    'promoted_at',
    'reverted_at',
    'finished_at',
    'resumed_at',
    'failures_baseline',
] as const;

export type Status = Pick<Rollout, (typeof STATUS_KEYS)[number]>;

export type RolloutEvent =
    /** Planned and about to start (nothing pending: it ends at once). */
    | { type: 'planned' }
    | { type: 'cancel' }
    | { type: 'promote' }
    | { type: 'resume' }
    | { type: 'revert' }
    /** The revert items are built (`items` of them): the rollout reverts. */
    | { type: 'revert-planned'; items: number }
    /** Taken over (after a restart, or from a SAPI whose lease expired) with `interrupted` items to run again. */
    | { type: 'taken-over'; startup: boolean; interrupted: number; previous?: string | undefined }
    /** A phase is about to start, or an item of it failed: is max_failures reached? */
    | { type: 'failures-check' }
    /** The driver started every item it could and the running ones ended. */
    | { type: 'drained' };

/** What the engine does after a step (in this order). */
export type Effect =
    /** Requeue items a previous driver had running (they run again). */
    | 'requeue-interrupted'
    /** Give up items a vanished driver had running. */
    | 'cancel-interrupted'
    /** Pending items will never start. */
    | 'cancel-pending'
    /** Forget a timer of an automatic promotion. */
    | 'disarm-auto-promote'
    /** Build the revert items (then `revert-planned`). */
    | 'plan-revert'
    /** Run the pending items (launch a driver, or go on driving). */
    | 'drive'
    /** The driver stops: the rollout is paused or finished. */
    | 'release';

export interface Step {
    status: Status;
    intent: Intent | null;
    /** Appended to the rollout's warnings. */
    warnings: string[];
    effects: Effect[];
}

/** An event the rollout's state does not allow; `message` says why (a 409). */
export interface Refusal {
    refused: string;
}

export type Outcome = Step | Refusal;

export function refused(o: Outcome): o is Refusal {
    return 'refused' in o;
}

export const PROMOTE_RULE = 'only a rollout paused for its canaries can be promoted';
export const RESUME_RULE = 'only a paused rollout can be resumed';
export const REVERT_RULE = 'a rollout can be reverted while running, paused, or once succeeded, failed or canceled, and only once';

/** The machine's fields of `r`. */
export function statusOf(r: Readonly<Rollout>): Status {
    const out: Record<string, unknown> = {};
    for (const k of STATUS_KEYS) {
        if (r[k] !== undefined) out[k] = r[k];
    }
    return out as Status;
}

/** Write `status` into `r` (fields it lacks are removed). */
export function applyStatus(r: Rollout, status: Status): void {
    for (const k of STATUS_KEYS) {
        if (status[k] === undefined) delete r[k];
        else (r as Record<string, unknown>)[k] = status[k];
    }
}

/** The rollout is waiting for its canaries to be promoted. */
export function canaryPhase(r: Readonly<Rollout>): boolean {
    return r.canary !== undefined && r.promoted_at === undefined;
}

/** The phases of the items a driver runs now. */
export function phasesToRun(r: Readonly<Rollout>): ItemPhase[] {
    return r.state === 'reverting' ? ['revert'] : canaryPhase(r) ? ['canary'] : ['canary', 'main'];
}

/** A driver takes commands (it is not pausing, canceling or ending; a revert it was told of may be canceled). */
export function steady(r: Readonly<Rollout>, intent: Intent): boolean {
    return (ACTIVE_STATES.includes(r.state) && !intent.cancel && !intent.halt) || (r.state === 'reverting' && intent.halt === 'revert');
}

/** The 409 text of an event a rollout in this state does not take. */
export function wrongState(r: Readonly<Rollout>, verb: string, why: string): string {
    const state = r.state === 'paused' ? `paused (${String(r.paused_reason)})` : r.state;
    return `rollout ${r.uuid} is ${state} and cannot be ${verb}: ${why}`;
}

function revertable(r: Readonly<Rollout>): boolean {
    return r.state === 'running' || r.state === 'paused' || r.state === 'succeeded' || r.state === 'failed' || r.state === 'canceled';
}

function finished(s: Status, state: RolloutState, at: string): Status {
    const { paused_reason: _r, paused_at: _p, auto_promote_at: _a, ...rest } = s;
    return { ...rest, state, finished_at: at };
}

function paused(s: Status, reason: PausedReason, at: string): Status {
    return { ...s, state: 'paused', paused_reason: reason, paused_at: at };
}

/**
 * The next state of `r` after `ev`, at `now` (ms), with what this
 * process's driver was asked (`intent`; null when nobody here drives it).
 */
export function step(r: Readonly<Rollout>, intent: Intent | null, ev: RolloutEvent, now: number): Outcome {
    const at = new Date(now).toISOString();
    const s = statusOf(r);
    const same = (effects: Effect[] = [], warnings: string[] = []): Step => ({ status: s, intent, warnings, effects });
    const failed = (phase: (p: ItemPhase | undefined) => boolean): boolean => r.items.some((i) => phase(i.phase) && i.state === 'failed');
    switch (ev.type) {
        case 'planned': {
            if (r.items.some((i) => i.state === 'pending')) {
                return same(['drive']);
            }
            // Nothing to run (every item already at its target, or newer): done at once, and said so.
            const outcome = r.items.some((i) => i.state === 'failed') ? 'failed' : 'succeeded';
            return {
                status: finished(s, outcome, at),
                intent: null,
                warnings: [`${r.created_at}: nothing to upgrade: ${nothingReason(r)}`],
                effects: ['release'],
            };
        }
        case 'cancel': {
            if (intent) {
                // The driver starts nothing more; the running items end, then it finishes as canceled.
                return { ...same(['cancel-pending']), intent: { ...intent, cancel: true } };
            }
            if (FINAL_STATES.includes(r.state)) {
                return same();
            }
            // Nobody drives it: items it had running were interrupted and will not be started again.
            return {
                status: finished(s, 'canceled', at),
                intent: null,
                warnings: [],
                effects: ['cancel-interrupted', 'cancel-pending', 'disarm-auto-promote'],
            };
        }
        case 'promote':
        case 'resume': {
            const verb = ev.type === 'promote' ? 'promoted' : 'resumed';
            const rule = ev.type === 'promote' ? PROMOTE_RULE : RESUME_RULE;
            const ok = r.state === 'paused' && (ev.type === 'resume' || r.paused_reason === 'canary');
            if (intent || !ok) {
                return { refused: wrongState(r, verb, rule) };
            }
            const { paused_reason: _r, paused_at: _p, auto_promote_at: _a, ...rest } = s;
            const next: Status = { ...rest, state: 'running' };
            if (r.paused_reason === 'canary') {
                next.promoted_at = at;
            } else {
                // max_failures counts again from here.
                next.failures_baseline = r.items.filter((i) => i.phase !== 'revert' && i.state === 'failed').length;
            }
            return {
                status: next,
                intent: null,
                warnings: [`${at}: ${verb} (was paused: ${String(r.paused_reason)})`],
                effects: ['disarm-auto-promote', 'drive'],
            };
        }
        case 'revert': {
            if (intent) {
                // Running here: no more items start; once the running ones end, the revert items are built and run.
                if (r.state !== 'running') {
                    return { refused: wrongState(r, 'reverted', REVERT_RULE) };
                }
                const { paused_reason: _r, ...rest } = s;
                return { status: { ...rest, state: 'reverting' }, intent: { ...intent, halt: 'revert' }, warnings: [], effects: ['cancel-pending'] };
            }
            // A running rollout nobody drives waits for its takeover first.
            if (!revertable(r) || r.state === 'running') {
                return { refused: wrongState(r, 'reverted', REVERT_RULE) };
            }
            return same(['plan-revert', 'drive']);
        }
        case 'revert-planned': {
            const { paused_reason: _r, paused_at: _p, auto_promote_at: _a, finished_at: _f, ...rest } = s;
            return {
                status: { ...rest, state: 'reverting', reverted_at: at },
                intent: intent && { ...intent, halt: null },
                warnings: [`${at}: reverting ${ev.items} item(s): upgrades back to their previous image, installs uninstalled`],
                effects: ['cancel-pending', 'disarm-auto-promote'],
            };
        }
        case 'taken-over': {
            if (!ACTIVE_STATES.includes(r.state)) {
                return { refused: `rollout ${r.uuid} is ${r.state}: only a running or reverting rollout is taken over` };
            }
            const warning = ev.startup
                ? `${at}: resumed after a restart; ${ev.interrupted} interrupted item(s) re-run`
                : `${at}: taken over from ${ev.previous ?? 'a SAPI'} whose lease expired (resumed after a restart of that SAPI, or its loss); ${ev.interrupted} interrupted item(s) re-run`;
            return { status: { ...s, resumed_at: at }, intent, warnings: [warning], effects: ['requeue-interrupted', 'drive'] };
        }
        case 'failures-check': {
            const limit = failureLimit(r);
            if (intent && intent.halt === null && r.state === 'running' && limit !== undefined && failuresCounted(r) >= limit) {
                return { ...same(), intent: { ...intent, halt: 'failures' } };
            }
            return same();
        }
        case 'drained': {
            if (intent?.cancel) {
                return { status: finished(s, 'canceled', at), intent, warnings: [], effects: ['release'] };
            }
            if (intent?.halt === 'revert') {
                return same(['plan-revert', 'drive']);
            }
            if (r.state === 'reverting') {
                return { status: finished(s, failed((p) => p === 'revert') ? 'failed' : 'reverted', at), intent, warnings: [], effects: ['release'] };
            }
            if (intent?.halt === 'failures') {
                return {
                    status: paused(s, 'failures', at),
                    intent: { ...intent, halt: null },
                    warnings: [`${at}: paused: ${failuresCounted(r)} failed item(s) reached max_failures ${String(r.max_failures)}`],
                    effects: ['release'],
                };
            }
            if (canaryPhase(r) && r.items.some((i) => i.state === 'pending' && i.phase === 'main')) {
                const next = paused(s, 'canary', at);
                const canaries = r.items.filter((i) => i.phase === 'canary');
                if (r.auto_promote_after_ms !== undefined && canaries.every((i) => i.state === 'succeeded' || i.state === 'skipped')) {
                    next.auto_promote_at = new Date(now + r.auto_promote_after_ms).toISOString();
                }
                return { status: next, intent, warnings: [], effects: ['release'] };
            }
            return { status: finished(s, failed((p) => p !== 'revert') ? 'failed' : 'succeeded', at), intent, warnings: [], effects: ['release'] };
        }
    }
}

/** The effects of a step on the items (the engine's part is the rest). */
export function applyItemEffects(r: Rollout, effects: readonly Effect[]): void {
    for (const effect of effects) {
        for (const item of r.items) {
            const interrupted = item.state === 'running' || item.state === 'stalled';
            if (effect === 'cancel-pending' && item.state === 'pending') item.state = 'canceled';
            if (effect === 'cancel-interrupted' && interrupted) item.state = 'canceled';
            if (effect === 'requeue-interrupted' && interrupted) item.state = 'pending';
        }
    }
}
