// The rollout state machine (lib/rollout/machine.ts), driven directly: each
// event on a rollout in a given state, the state it leads to, the times it
// stamps (from a manual clock) and what it asks the engine to do.

import t, { type Test } from 'tap';

import { ManualClock } from '../../lib/rollout/clock.js';
import { applyItemEffects, applyStatus, refused, step, type Intent, type Outcome, type RolloutEvent, type Step } from '../../lib/rollout/machine.js';
import type { ItemPhase, ItemState, Rollout, RolloutItem } from '../../lib/rollout/types.js';

const UUID = '11111111-2222-3333-4444-555555555555';

function item(state: ItemState, phase: ItemPhase = 'main', server = 's1'): RolloutItem {
    return { instance_uuid: `i-${server}`, server_uuid: server, service_uuid: 'svc', service_name: 'vm-agent', to_image: 'img2', phase, state, attempts: 0 };
}

function rollout(items: RolloutItem[], more: Partial<Rollout> = {}): Rollout {
    return {
        uuid: UUID,
        service_name: 'vm-agent',
        concurrency: 2,
        stall_factor: 3,
        stall_min_finished: 3,
        instance_timeout_ms: 60_000,
        state: 'running',
        created_at: '2029-12-31T00:00:00.000Z',
        counts: { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0 },
        totals: { servers: 0, servers_done: 0, items: 0, succeeded: 0, failed: 0, skipped: 0 },
        warnings: [],
        items,
        ...more,
    };
}

const driver = (): Intent => ({ cancel: false, halt: null });

function accepted(t: Test, out: Outcome): Step {
    if (refused(out)) {
        t.fail(`refused: ${out.refused}`);
        throw new Error(out.refused);
    }
    return out;
}

/** Apply an accepted step to `r` as the engine does (state, warnings, items). */
function take(t: Test, r: Rollout, intent: Intent | null, ev: RolloutEvent, clock: ManualClock): Step {
    const s = accepted(t, step(r, intent, ev, clock.now()));
    applyStatus(r, s.status);
    r.warnings.push(...s.warnings);
    applyItemEffects(r, s.effects);
    return s;
}

const iso = (clock: ManualClock): string => new Date(clock.now()).toISOString();

t.test('planned: pending items start; with none it ends at once, saying so', async (t) => {
    const clock = new ManualClock();
    const go = step(rollout([item('pending'), item('skipped')]), null, { type: 'planned' }, clock.now());
    t.match(go, { status: { state: 'running' }, effects: ['drive'], warnings: [] });

    const none = rollout([{ ...item('skipped'), reason: 'already at the target image' }]);
    const s = take(t, none, null, { type: 'planned' }, clock);
    t.same(s.effects, ['release']);
    t.equal(none.state, 'succeeded');
    t.equal(none.finished_at, iso(clock), 'finished at the clock time');
    t.match(none.warnings, [
        /^2029-12-31T00:00:00.000Z: nothing to upgrade: every item is skipped or failed before running \(1 already at the target image\)$/,
    ]);

    const failed = rollout([{ ...item('failed'), reason: 'server not ready' }]);
    take(t, failed, null, { type: 'planned' }, clock);
    t.equal(failed.state, 'failed', 'failed before running: failed');
});

t.test('drained: succeeded, or failed when an upgrade item failed', async (t) => {
    const clock = new ManualClock();
    const ok = rollout([item('succeeded'), item('skipped', 'main', 's2')]);
    await clock.advance(5_000);
    const s = take(t, ok, driver(), { type: 'drained' }, clock);
    t.same(s.effects, ['release']);
    t.match(ok, { state: 'succeeded', finished_at: iso(clock) });
    const bad = rollout([item('succeeded'), item('failed', 'main', 's2')]);
    take(t, bad, driver(), { type: 'drained' }, clock);
    t.equal(bad.state, 'failed');
});

t.test('canaries: paused when they are done; automatic promotion time only when they all succeeded', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('succeeded', 'canary'), item('pending', 'main', 's2')], { canary: 1, auto_promote_after_ms: 60_000 });
    take(t, r, driver(), { type: 'drained' }, clock);
    t.match(r, { state: 'paused', paused_reason: 'canary', paused_at: iso(clock) });
    t.equal(r.auto_promote_at, new Date(clock.now() + 60_000).toISOString(), 'promotes itself a minute later');

    const failedCanary = rollout([item('failed', 'canary'), item('pending', 'main', 's2')], { canary: 1, auto_promote_after_ms: 60_000 });
    take(t, failedCanary, driver(), { type: 'drained' }, clock);
    t.equal(failedCanary.state, 'paused');
    t.equal(failedCanary.auto_promote_at, undefined, 'a failed canary is never promoted automatically');

    // Promoted later: the promotion time is the clock's then.
    await clock.advance(60_000);
    const p = take(t, r, null, { type: 'promote' }, clock);
    t.same(p.effects, ['disarm-auto-promote', 'drive']);
    t.match(r, { state: 'running', promoted_at: iso(clock) });
    t.notOk('paused_at' in r || 'paused_reason' in r || 'auto_promote_at' in r, 'the pause is over');
    t.match(r.warnings.at(-1), `${iso(clock)}: promoted (was paused: canary)`);
    // The canary phase is over: once drained it finishes.
    r.items[1] = item('succeeded', 'main', 's2');
    take(t, r, driver(), { type: 'drained' }, clock);
    t.equal(r.state, 'succeeded');
});

t.test('max_failures: the driver halts once reached, pauses, and counts again from a resume', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('failed'), item('failed', 'main', 's2'), item('pending', 'main', 's3')], { max_failures: 2 });
    let intent = driver();
    const under = rollout([item('failed'), item('pending', 'main', 's2')], { max_failures: 2 });
    t.same(accepted(t, step(under, intent, { type: 'failures-check' }, clock.now())).intent, intent, 'under the limit: nothing');
    const s = take(t, r, intent, { type: 'failures-check' }, clock);
    intent = s.intent as Intent;
    t.same(intent, { cancel: false, halt: 'failures' }, 'no more items start');
    t.same(accepted(t, step(r, intent, { type: 'failures-check' }, clock.now())).intent, intent, 'said once');
    await clock.advance(1_000);
    const p = take(t, r, intent, { type: 'drained' }, clock);
    t.match(r, { state: 'paused', paused_reason: 'failures', paused_at: iso(clock) });
    t.equal(p.intent?.halt, null);
    t.match(r.warnings.at(-1), `${iso(clock)}: paused: 2 failed item(s) reached max_failures 2`);

    const promote = step(r, null, { type: 'promote' }, clock.now());
    t.same(promote, { refused: `rollout ${UUID} is paused (failures) and cannot be promoted: only a rollout paused for its canaries can be promoted` });
    take(t, r, null, { type: 'resume' }, clock);
    t.match(r, { state: 'running', failures_baseline: 2 });
    t.equal(r.promoted_at, undefined, 'a resume from failures promotes nothing');
    t.same(accepted(t, step(r, driver(), { type: 'failures-check' }, clock.now())).intent, driver(), 'counted again from the resume');

    // A percentage of the items to run (skipped ones are not).
    const pct = rollout([item('failed'), item('pending', 'main', 's2'), item('pending', 'main', 's3'), item('skipped', 'main', 's4')], { max_failures: '25%' });
    t.equal(accepted(t, step(pct, driver(), { type: 'failures-check' }, clock.now())).intent?.halt, 'failures', '25% of 3: one');
    const paused = rollout([item('failed')], { max_failures: 1, state: 'reverting' });
    t.equal(accepted(t, step(paused, driver(), { type: 'failures-check' }, clock.now())).intent?.halt, null, 'only while running');
});

t.test('resume and promote: refused unless paused, and while a driver here runs it', async (t) => {
    const clock = new ManualClock();
    const running = rollout([item('pending')]);
    t.same(step(running, null, { type: 'resume' }, clock.now()), {
        refused: `rollout ${UUID} is running and cannot be resumed: only a paused rollout can be resumed`,
    });
    t.same(step(running, driver(), { type: 'promote' }, clock.now()), {
        refused: `rollout ${UUID} is running and cannot be promoted: only a rollout paused for its canaries can be promoted`,
    });
    const paused = rollout([item('pending')], { state: 'paused', paused_reason: 'canary', canary: 1 });
    t.ok(refused(step(paused, driver(), { type: 'resume' }, clock.now())), 'a paused rollout still driven here waits');
    const r = rollout([item('succeeded', 'canary'), item('pending', 'main', 's2')], { state: 'paused', paused_reason: 'canary', canary: 1 });
    take(t, r, null, { type: 'resume' }, clock);
    t.match(r, { state: 'running', promoted_at: iso(clock) }, 'resume from a canary pause promotes');
    t.match(r.warnings.at(-1), /resumed \(was paused: canary\)$/);
});

t.test('revert: a running driver halts and reverts after; others revert under their lease; only once', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('running'), item('pending', 'main', 's2')]);
    let s = take(t, r, driver(), { type: 'revert' }, clock);
    t.same(s.intent, { cancel: false, halt: 'revert' });
    t.same(s.effects, ['cancel-pending']);
    t.equal(r.state, 'reverting', 'reverting at once');
    t.same(
        r.items.map((i) => i.state),
        ['running', 'canceled'],
    );
    t.ok(refused(step(r, s.intent, { type: 'revert' }, clock.now())), 'not twice');
    r.items[0] = item('succeeded');
    s = take(t, r, s.intent, { type: 'drained' }, clock);
    t.same(s.effects, ['plan-revert', 'drive'], 'the running item ended: the revert items are built');
    await clock.advance(2_000);
    s = take(t, r, s.intent, { type: 'revert-planned', items: 1 }, clock);
    t.equal(s.intent?.halt, null);
    t.match(r, { state: 'reverting', reverted_at: iso(clock) });
    t.match(r.warnings.at(-1), `${iso(clock)}: reverting 1 item(s)`);
    r.items.push({ ...item('succeeded', 'revert'), to_image: 'img1' });
    take(t, r, s.intent, { type: 'drained' }, clock);
    t.match(r, { state: 'reverted', finished_at: iso(clock) });
    t.same(step(r, null, { type: 'revert' }, clock.now()), {
        refused: `rollout ${UUID} is reverted and cannot be reverted: a rollout can be reverted while running, paused, or once succeeded, failed or canceled, and only once`,
    });

    // Finished, paused and canceled rollouts revert under their lease; a running one nobody drives waits for its takeover.
    for (const state of ['succeeded', 'failed', 'canceled', 'paused'] as const) {
        t.same(accepted(t, step(rollout([item('succeeded')], { state }), null, { type: 'revert' }, clock.now())).effects, ['plan-revert', 'drive'], state);
    }
    t.ok(refused(step(rollout([item('running')]), null, { type: 'revert' }, clock.now())), 'running, undriven: refused');
    const done = rollout([item('succeeded')], { state: 'succeeded', finished_at: '2029-12-31T01:00:00.000Z' });
    take(t, done, null, { type: 'revert-planned', items: 1 }, clock);
    t.equal(done.finished_at, undefined, 'no longer finished');
    done.items.push({ ...item('failed', 'revert'), to_image: 'img1' });
    take(t, done, driver(), { type: 'drained' }, clock);
    t.equal(done.state, 'failed', 'a failed revert item fails the revert');
});

t.test('cancel: a driver ends as canceled once its running items end; an undriven rollout at once', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('running'), item('pending', 'main', 's2')]);
    let s = take(t, r, driver(), { type: 'cancel' }, clock);
    t.same(s.intent, { cancel: true, halt: null });
    t.equal(r.state, 'running', 'still running while its items end');
    t.same(
        r.items.map((i) => i.state),
        ['running', 'canceled'],
    );
    await clock.advance(3_000);
    take(t, r, s.intent, { type: 'drained' }, clock);
    t.match(r, { state: 'canceled', finished_at: iso(clock) });

    const paused = rollout([item('stalled'), item('pending', 'main', 's2')], {
        state: 'paused',
        paused_reason: 'canary',
        paused_at: 'x',
        auto_promote_at: 'y',
    });
    s = take(t, paused, null, { type: 'cancel' }, clock);
    t.same(s.effects, ['cancel-interrupted', 'cancel-pending', 'disarm-auto-promote']);
    t.same(
        paused.items.map((i) => i.state),
        ['canceled', 'canceled'],
    );
    t.notOk('paused_at' in paused || 'auto_promote_at' in paused || 'paused_reason' in paused);
    t.equal(paused.state, 'canceled');
    const finished = rollout([item('succeeded')], { state: 'succeeded' });
    t.same(accepted(t, step(finished, null, { type: 'cancel' }, clock.now())).effects, [], 'a finished rollout stays as it is');
});

t.test('taken over: interrupted items run again, and it says by whom', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('running'), item('stalled', 'main', 's2'), item('succeeded', 'main', 's3')], { owner: 'host/1/abc' });
    take(t, r, null, { type: 'taken-over', startup: true, interrupted: 2 }, clock);
    t.equal(r.resumed_at, iso(clock));
    t.same(
        r.items.map((i) => i.state),
        ['pending', 'pending', 'succeeded'],
    );
    t.equal(r.warnings.at(-1), `${iso(clock)}: resumed after a restart; 2 interrupted item(s) re-run`);
    await clock.advance(1_500);
    take(t, r, null, { type: 'taken-over', startup: false, interrupted: 0, previous: 'host/1/abc' }, clock);
    t.match(r.warnings.at(-1), `${iso(clock)}: taken over from host/1/abc whose lease expired`);
    t.ok(refused(step(rollout([], { state: 'paused' }), null, { type: 'taken-over', startup: true, interrupted: 0 }, clock.now())), 'only active ones');
});
