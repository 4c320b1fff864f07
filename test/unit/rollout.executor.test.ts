// The rollout executor, persister and automatic promotions on a manual
// clock: per-server serial items with servers in parallel, the hard
// per-item timeout, a busy server tried again, the stall watchdog, halting,
// and throttled writes; every time is the clock's, so nothing here sleeps.

import bunyan from 'bunyan';
import t from 'tap';

import { operationInProgress } from '../../lib/errors.js';
import { ManualClock, settle } from '../../lib/rollout/clock.js';
import { BUSY_RETRY_MS, durationsOf, Executor, type Run } from '../../lib/rollout/executor.js';
import { Persister } from '../../lib/rollout/persister.js';
import { AutoPromotions } from '../../lib/rollout/takeover.js';
import type { Rollout, RolloutItem } from '../../lib/rollout/types.js';

const log = bunyan.createLogger({ name: 'test', level: 'fatal' });

function item(server: string, name = 'vm-agent'): RolloutItem {
    return {
        instance_uuid: `${server}-${name}`,
        server_uuid: server,
        service_uuid: name,
        service_name: name,
        to_image: 'img',
        phase: 'main',
        state: 'pending',
        attempts: 0,
    };
}

function rollout(items: RolloutItem[], more: Partial<Rollout> = {}): Rollout {
    return {
        uuid: 'r1',
        service_name: 'vm-agent',
        concurrency: 2,
        stall_factor: 3,
        stall_min_finished: 2,
        instance_timeout_ms: 10_000,
        state: 'running',
        created_at: '2029-12-31T00:00:00.000Z',
        counts: { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0 },
        totals: { servers: 0, servers_done: 0, items: 0, succeeded: 0, failed: 0, skipped: 0 },
        warnings: [],
        items,
        ...more,
    };
}

/** Items whose action the test ends by hand (`finish`), recording when each started. */
function manualActs(clock: ManualClock): {
    act: Run['act'];
    started: { item: string; at: number }[];
    finish(instance: string, err?: Error): void;
    signals: Map<string, AbortSignal>;
} {
    const started: { item: string; at: number }[] = [];
    const ends = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
    const signals = new Map<string, AbortSignal>();
    return {
        started,
        signals,
        act: (item, signal) =>
            new Promise<void>((resolve, reject) => {
                started.push({ item: item.instance_uuid, at: clock.now() });
                signals.set(item.instance_uuid, signal);
                ends.set(item.instance_uuid, { resolve, reject });
            }),
        finish: (instance, err) => {
            const e = ends.get(instance);
            if (err) e?.reject(err);
            else e?.resolve();
        },
    };
}

function runOf(r: Rollout, act: Run['act'], more: Partial<Run> = {}): Run {
    return { rollout: r, phases: ['canary', 'main'], halted: () => false, failed: () => undefined, act, durations: durationsOf(r), ...more };
}

t.test("one server's items one after another, servers side by side up to concurrency", async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('s1', 'config-agent'), item('s1', 'vm-agent'), item('s2'), item('s3')]);
    const acts = manualActs(clock);
    let changes = 0;
    const done = new Executor({ clock, log, changed: () => (changes += 1) }).run(runOf(r, acts.act));
    await settle();
    t.same(
        acts.started.map((s) => s.item),
        ['s1-config-agent', 's2-vm-agent'],
        'two servers at once; s1 one item at a time',
    );
    await clock.advance(1_000);
    acts.finish('s1-config-agent');
    await settle();
    t.same(
        acts.started.map((s) => s.item),
        ['s1-config-agent', 's2-vm-agent', 's1-vm-agent'],
        "s1's next item once its first ended",
    );
    t.match(r.items[0], { state: 'succeeded', duration_ms: 1_000, attempts: 1 });
    t.equal(r.average_ms, 1_000);
    await clock.advance(500);
    acts.finish('s2-vm-agent');
    await settle();
    t.equal(acts.started.at(-1)?.item, 's3-vm-agent', 'a free worker takes the next server');
    acts.finish('s1-vm-agent');
    acts.finish('s3-vm-agent');
    await done;
    t.ok(
        r.items.every((i) => i.state === 'succeeded'),
        'all succeeded',
    );
    // s1: 1,000 and 500 ms; s2: 1,500 ms; s3 started and ended at 1,500 ms.
    t.equal(r.average_ms, Math.round((1_000 + 500 + 1_500 + 0) / 4));
    t.equal(changes, 8, 'told of every start and end');
    t.equal(clock.pending, 0, 'no timer left behind');
});

t.test('an item over instance_timeout_ms is aborted and failed at its deadline, not before', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('s1'), item('s2')]);
    const acts = manualActs(clock);
    const failed: string[] = [];
    const done = new Executor({ clock, log, changed: () => undefined }).run(runOf(r, acts.act, { failed: (i) => failed.push(i.instance_uuid) }));
    await clock.advance(9_999);
    acts.finish('s2-vm-agent');
    await settle();
    t.equal(r.items[0]?.state, 'running', 'not before its deadline');
    t.notOk(acts.signals.get('s1-vm-agent')?.aborted);
    await clock.advance(1);
    await done;
    t.ok(acts.signals.get('s1-vm-agent')?.aborted, 'the action is told to stop');
    t.match(r.items[0], { state: 'failed', duration_ms: 10_000, error: 'instance s1-vm-agent on server s1 timed out after 10.0s' });
    t.same(failed, ['s1-vm-agent'], 'the failure is reported');
});

t.test('a busy server is tried again after BUSY_RETRY_MS, within the deadline', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('s1')]);
    const tries: number[] = [];
    const act: Run['act'] = async () => {
        tries.push(clock.now());
        if (tries.length < 3) throw operationInProgress('server s1 is busy');
    };
    const done = new Executor({ clock, log, changed: () => undefined }).run(runOf(r, act));
    await clock.advance(2 * BUSY_RETRY_MS);
    await done;
    const t0 = tries[0] as number;
    t.same(
        tries.map((x) => x - t0),
        [0, BUSY_RETRY_MS, 2 * BUSY_RETRY_MS],
    );
    t.match(r.items[0], { state: 'succeeded', attempts: 1, duration_ms: 2 * BUSY_RETRY_MS });

    // Busy past the deadline: it fails with the server's answer.
    const late = rollout([item('s1')], { instance_timeout_ms: 150 });
    const busy: Run['act'] = async () => {
        throw operationInProgress('server s1 is busy');
    };
    const ended = new Executor({ clock, log, changed: () => undefined }).run(runOf(late, busy));
    await clock.advance(BUSY_RETRY_MS);
    await ended;
    t.match(late.items[0], { state: 'failed', error: /server s1 is busy/ });
});

t.test('the watchdog flags an item over stall_factor times the average, once enough finished', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('s1'), item('s2'), item('s3')], { concurrency: 3 });
    const acts = manualActs(clock);
    const done = new Executor({ clock, log, changed: () => undefined }).run(runOf(r, acts.act));
    await clock.advance(100);
    acts.finish('s1-vm-agent');
    await clock.advance(900);
    t.equal(r.items[2]?.state, 'running', 'one finished item is not enough to trust the average');
    acts.finish('s2-vm-agent');
    await settle();
    t.equal(r.average_ms, 550);
    // Over 3 x 550 ms: seen at the first watchdog tick after 1,650 ms.
    await clock.advance(500);
    t.equal(r.items[2]?.state, 'running', 'within the limit');
    await clock.advance(250);
    t.equal(r.items[2]?.state, 'stalled');
    t.same(r.warnings, ['instance s3-vm-agent on server s3 has run 1.8s, over 3x the average 0.6s']);
    acts.finish('s3-vm-agent');
    await done;
    t.equal(r.items[2]?.state, 'succeeded', 'a stall is a warning: the item ends as its task does');
});

t.test('halted: no item starts; the running ones end', async (t) => {
    const clock = new ManualClock();
    const r = rollout([item('s1'), item('s1', 'net-agent'), item('s2')], { concurrency: 1 });
    const acts = manualActs(clock);
    let halt = false;
    const done = new Executor({ clock, log, changed: () => undefined }).run(runOf(r, acts.act, { halted: () => halt }));
    await settle();
    halt = true;
    acts.finish('s1-vm-agent');
    await done;
    t.same(
        r.items.map((i) => i.state),
        ['succeeded', 'pending', 'pending'],
    );
    // Only the phases asked for run.
    const phased = rollout([{ ...item('s1'), phase: 'canary' }, item('s2')]);
    const ran: string[] = [];
    await new Executor({ clock, log, changed: () => undefined }).run(runOf(phased, async (i) => void ran.push(i.instance_uuid), { phases: ['canary'] }));
    t.same(ran, ['s1-vm-agent'], 'canaries only');
});

t.test('progress is written at most once per interval; a final write goes at once, in order', async (t) => {
    const clock = new ManualClock();
    const writes: { at: number; state: string }[] = [];
    let fenced = false;
    const p = new Persister({
        clock,
        log,
        intervalMs: 500,
        fenced: () => fenced,
        write: async (r) => void writes.push({ at: clock.now(), state: r.state }),
    });
    const r = rollout([item('s1')]);
    const t0 = clock.now();
    void p.persist(r);
    void p.persist(r);
    await clock.advance(499);
    t.same(writes, [], 'not before the interval');
    await clock.advance(1);
    t.same(writes, [{ at: t0 + 500, state: 'running' }], 'one write for both');
    void p.persist(r);
    r.state = 'paused';
    await p.persist(r, true);
    t.same(writes.length, 2, 'the final write at once');
    await clock.advance(1_000);
    t.equal(writes.length, 2, 'and the pending one is not made again');
    fenced = true;
    await p.persist(r, true);
    t.equal(writes.length, 2, 'nothing once the lease is lost');
    fenced = false;
    void p.persist(r);
    p.forget(r.uuid);
    await clock.advance(1_000);
    t.equal(writes.length, 2, 'a forgotten rollout is not written');
});

t.test('automatic promotion at auto_promote_at on the clock; disarmed, or stopped, it never fires', async (t) => {
    const clock = new ManualClock();
    const promoted: string[] = [];
    const auto = new AutoPromotions(clock, (uuid) => promoted.push(uuid));
    const at = new Date(clock.now() + 60_000).toISOString();
    auto.arm(rollout([], { uuid: 'a', auto_promote_at: at }));
    auto.arm(rollout([], { uuid: 'a', auto_promote_at: at }));
    auto.arm(rollout([], { uuid: 'b', auto_promote_at: at }));
    auto.disarm('b');
    await clock.advance(59_999);
    t.same(promoted, []);
    await clock.advance(1);
    t.same(promoted, ['a'], 'once, at its time');
    auto.arm(rollout([], { uuid: 'c', auto_promote_at: at }));
    auto.stop();
    auto.arm(rollout([], { uuid: 'd', auto_promote_at: at }));
    await clock.advance(1);
    t.same(promoted, ['a'], 'none after stop');
    t.equal(clock.pending, 0);
});
