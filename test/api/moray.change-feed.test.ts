// GetConfig's change feed on Moray (lib/stor/moray/feed.ts) against the fake
// Moray: deletes leave a tombstone in the same batch (or nothing, when the
// delete fails); a poll tells every object another SAPI wrote or deleted,
// each change once; a failed poll tells nothing and vouches for nothing, and
// the next one tells what changed meanwhile; a delete without a tombstone
// (as SAPI 2.1.2 makes) is not told; too many changes start a new chain; old
// tombstones are pruned.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import type { BucketName } from '../../lib/stor/buckets.js';
import { TOMBSTONES_BUCKET } from '../../lib/stor/buckets.js';
import { EtagConflictError } from '../../lib/stor/errors.js';
import { connectMoray } from '../../lib/stor/moray/client.js';
import { ChangeFeed, type ChangeSink } from '../../lib/stor/moray/feed.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';

const INSTANCES: BucketName = 'sapi_instances';
const SERVICES: BucketName = 'sapi_services';

/** A sink that records what it is told; its clock is a counter. */
class Recorder implements ChangeSink {
    clock = 0;
    told: string[] = [];
    polls: { startedAt: number; since: number }[] = [];
    now(): number {
        return this.clock;
    }
    changed(bucket: BucketName, uuid: string): void {
        this.told.push(`${bucket}/${uuid}`);
    }
    polled(startedAt: number, since: number): void {
        this.polls.push({ startedAt, since });
    }
    take(): string[] {
        const out = this.told.sort();
        this.told = [];
        return out;
    }
}

async function setup(
    t: { teardown(fn: () => unknown): void },
    feedOpts: { limit?: number; pageSize?: number; tombstoneKeepMs?: number; pruneEveryMs?: number; overlapMs?: number; wallNow?: () => number } = {},
) {
    const moray: FakeMoray = await startFakeMoray();
    t.teardown(() => moray.close());
    const mine = new MorayStore({ connect: { host: moray.host, port: moray.port }, retryMinDelayMs: 10, retryMaxDelayMs: 100 });
    await mine.init();
    t.teardown(() => mine.close());
    const other = new MorayStore({ connect: { host: moray.host, port: moray.port }, retryMinDelayMs: 10, retryMaxDelayMs: 100 });
    await other.init();
    t.teardown(() => other.close());
    const sink = new Recorder();
    const feed = new ChangeFeed({ source: () => mine.changeSource(), sink, ...feedOpts });
    t.teardown(() => feed.stop());
    /** One poll at sink time `at`. */
    const poll = async (at: number): Promise<void> => {
        sink.clock = at;
        await feed.poll();
    };
    return { moray, mine, other, sink, feed, poll };
}

const inst = (uuid = randomUUID()): { uuid: string; service_uuid: string; type: string; params: object; metadata: object } => ({
    uuid,
    service_uuid: randomUUID(),
    type: 'vm',
    params: {},
    metadata: {},
});

t.test('a delete writes its tombstone in the same batch; a failed delete writes none', async (t) => {
    const { moray, mine } = await setup(t);
    const tombstones = (): string[] => [...(moray.state.buckets.get(TOMBSTONES_BUCKET.name)?.rows.keys() ?? [])].sort();
    const a = inst();
    const b = inst();
    const c = inst();
    const stored = await mine.put(INSTANCES, a);
    await mine.put(INSTANCES, b);
    await mine.put(INSTANCES, c);

    await t.rejects(mine.del(INSTANCES, a.uuid, { etag: 'BADBAD00' }), EtagConflictError, 'a delete on a stale etag fails');
    t.same(tombstones(), [], '... and leaves no tombstone');
    moray.failNext('batch', 'InternalError');
    await t.rejects(mine.del(INSTANCES, a.uuid));
    t.same(tombstones(), [], 'a failed batch leaves neither');
    t.not(await mine.get(INSTANCES, a.uuid), null, '... and the object');

    await mine.del(INSTANCES, a.uuid, { etag: stored.etag });
    t.same(tombstones(), [`${INSTANCES}/${a.uuid}`], 'a delete: its tombstone');
    const batches = moray.requestsOf('batch');
    const last = batches[batches.length - 1]?.args[0] as { operation: string; bucket: string }[];
    t.same(
        last.map((r) => `${r.operation} ${r.bucket}`),
        [`delete ${INSTANCES}`, `put ${TOMBSTONES_BUCKET.name}`],
        'in one batch with the delete',
    );
    await mine.batch([
        { op: 'del', bucket: INSTANCES, uuid: b.uuid },
        { op: 'put', bucket: INSTANCES, value: { ...c, metadata: { X: 1 } } },
    ]);
    t.same(tombstones(), [`${INSTANCES}/${a.uuid}`, `${INSTANCES}/${b.uuid}`].sort(), 'a batch with a delete: its tombstone too');
    await mine.setMeta('k', 'v');
    t.same(tombstones().length, 2, 'other buckets: none');
});

t.test('a poll tells what another SAPI wrote or deleted, each change once', async (t) => {
    const { other, sink, poll } = await setup(t);
    const a = inst();
    await other.put(INSTANCES, a);
    await poll(0);
    t.same(sink.take(), [], 'the first poll only finds where the feed starts');
    t.same(sink.polls, [{ startedAt: 0, since: 0 }], 'and vouches from then on');

    const b = inst();
    await other.put(INSTANCES, b);
    await other.put(SERVICES, { uuid: 'svc-1', name: 's', application_uuid: randomUUID(), type: 'vm' });
    await poll(1);
    const told = sink.take();
    t.ok(told.includes(`${INSTANCES}/${b.uuid}`), 'a new instance');
    t.ok(told.includes(`${SERVICES}/svc-1`), 'a new service');
    t.same(sink.polls[1], { startedAt: 1, since: 0 }, 'the same chain');

    await poll(2);
    t.same(sink.take(), [], 'nothing changed: nothing told again (the overlap is read again, each change told once)');

    await other.put(INSTANCES, { ...b, metadata: { N: 2 } });
    await other.del(INSTANCES, a.uuid);
    await poll(3);
    t.same(sink.take(), [`${INSTANCES}/${a.uuid}`, `${INSTANCES}/${b.uuid}`].sort(), 'an update, and a delete (by its tombstone)');
});

t.test('a failed poll vouches for nothing; the next one tells what changed meanwhile', async (t) => {
    const { moray, other, sink, poll } = await setup(t);
    await poll(0);
    const a = inst();
    await other.put(INSTANCES, a);
    moray.failNext('findObjects', 'InternalError');
    await poll(1);
    t.same(sink.polls.length, 1, 'a failed poll: no polled()');
    await poll(2);
    t.same(sink.take(), [`${INSTANCES}/${a.uuid}`], 'the next one tells the change');
    t.same(sink.polls[1], { startedAt: 2, since: 0 }, 'and the chain goes on');

    await moray.stop();
    await other.del(INSTANCES, a.uuid).catch(() => undefined); // Moray is down: the delete fails
    await poll(3);
    t.same(sink.polls.length, 2, 'Moray down: no polled()');
    await moray.start();
    const b = inst();
    for (let i = 0; i < 50; i++) {
        try {
            await other.put(INSTANCES, b);
            break;
        } catch {
            await new Promise((r) => setTimeout(r, 50));
        }
    }
    for (let at = 4; sink.polls.length < 3 && at < 200; at++) {
        await poll(at);
        if (sink.polls.length < 3) {
            await new Promise((r) => setTimeout(r, 50));
        }
    }
    t.same(sink.polls.length, 3, 'Moray back: polls succeed again');
    t.same(sink.take(), [`${INSTANCES}/${b.uuid}`], 'and tell what was written meanwhile');
});

t.test('a delete without a tombstone (SAPI 2.1.2) is not told', async (t) => {
    const { moray, other, sink, poll } = await setup(t);
    const a = inst();
    await other.put(INSTANCES, a);
    await poll(0);
    const raw = await connectMoray({ host: moray.host, port: moray.port });
    t.teardown(() => raw.close());
    await raw.delObject(INSTANCES, a.uuid);
    await poll(1);
    t.same(sink.take(), [], 'nothing told (the cache reads it again after its fallback)');
    t.same(sink.polls.length, 2, 'the poll itself succeeded');
});

t.test('more changes than one poll reads: a new chain', async (t) => {
    const { other, sink, poll } = await setup(t, { limit: 3 });
    await poll(0);
    for (let i = 0; i < 3; i++) {
        await other.put(INSTANCES, inst());
    }
    await poll(1);
    t.same(sink.take().length, 3, 'what it read is told');
    t.same(sink.polls.length, 1, 'but it vouches for nothing');
    await poll(2);
    t.same(sink.polls[1], { startedAt: 2, since: 2 }, 'the next poll begins a new chain');
});

t.test('more changes than one page: read in pages, within the same chain', async (t) => {
    const { other, sink, poll } = await setup(t, { limit: 100, pageSize: 2 });
    await poll(0);
    const made: string[] = [];
    for (let i = 0; i < 7; i++) {
        const v = inst();
        made.push(`${INSTANCES}/${v.uuid}`);
        await other.put(INSTANCES, v);
    }
    await poll(1);
    t.same(sink.take().sort(), made.sort(), 'every change is told once');
    t.same(sink.polls[1], { startedAt: 1, since: 0 }, 'and the poll vouches for them in the same chain');
});

t.test('a burst of changes is read again only within the overlap', async (t) => {
    const { other, sink, poll } = await setup(t, { limit: 3, overlapMs: 20 });
    await poll(0);
    for (let i = 0; i < 3; i++) {
        await other.put(INSTANCES, inst());
    }
    await poll(1);
    t.same(sink.polls.length, 1, 'the burst: too many for one poll');
    await new Promise((r) => setTimeout(r, 60));
    await poll(2);
    t.same(sink.polls.length, 2, 'a new chain');
    await new Promise((r) => setTimeout(r, 60));
    await poll(3);
    t.same(sink.polls[2], { startedAt: 3, since: 2 }, 'once the burst is older than the overlap, polls no longer meet it');
});

t.test("Moray's clock behind this process's: changes are still told", async (t) => {
    const { other, sink, poll } = await setup(t, { wallNow: () => Date.now() + 60_000 });
    await poll(0);
    const a = inst();
    await other.put(INSTANCES, a);
    await poll(1);
    t.same(sink.take(), [`${INSTANCES}/${a.uuid}`], 'told (the offset is measured)');
});

t.test('old tombstones are pruned', async (t) => {
    const { moray, other, sink, poll } = await setup(t, { tombstoneKeepMs: 0, pruneEveryMs: 0 });
    const a = inst();
    await other.put(INSTANCES, a);
    await other.del(INSTANCES, a.uuid);
    t.equal(moray.state.buckets.get(TOMBSTONES_BUCKET.name)?.rows.size, 1, 'a tombstone');
    await poll(0);
    await poll(1);
    // Pruning runs beside the polls: wait for it (generous deadline).
    for (let i = 0; i < 200 && (moray.state.buckets.get(TOMBSTONES_BUCKET.name)?.rows.size ?? 0) > 0; i++) {
        await new Promise((r) => setTimeout(r, 25));
    }
    t.equal(moray.state.buckets.get(TOMBSTONES_BUCKET.name)?.rows.size, 0, 'pruned once older than the life kept');
    t.ok(sink.polls.length >= 1);
});
