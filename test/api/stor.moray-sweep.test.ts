// The sweep of rows changed since a mark (lib/stor/moray/sweep.ts) against
// the fake Moray: it pages by `_mtime` without skipping rows that share one
// `_mtime` across a page boundary (more of them than a page holds, too),
// whatever order Moray returns tied rows in; it rewrites only stale rows,
// each conditional on its etag; it saves a mark that never moves back. And
// the change feed's repairer leaves a row written meanwhile to its writer.

import { randomUUID } from 'node:crypto';

import t, { type Test } from 'tap';

import { BUCKETS, staleIndexCopies, withIndexCopies } from '../../lib/stor/buckets.js';
import { connectMoray, type MorayClient } from '../../lib/stor/moray/client.js';
import { IndexRepairer } from '../../lib/stor/moray/repair.js';
import { loadSweepMark, runSweep, saveSweepMark, sweepMetaKey } from '../../lib/stor/moray/sweep.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import type { JsonObject } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';

const DEF = BUCKETS.instances;
const INSTANCES = DEF.name;

async function setup(t: Test): Promise<{ fake: FakeMoray; raw: MorayClient }> {
    const fake = await startFakeMoray();
    // Buckets as SAPI-TS creates them (no periodic sweep in the way).
    const store = new MorayStore({ connect: { host: fake.host, port: fake.port }, sweepEveryMs: 0 });
    await store.init();
    await store.initializer?.reindexDone();
    await store.close();
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    t.teardown(async () => {
        await raw.close();
        await fake.close();
    });
    return { fake, raw };
}

/** An instance as SAPI 2.1.2 writes it: server and image only in params. */
const row212 = (server = randomUUID()): JsonObject => ({
    uuid: randomUUID(),
    service_uuid: randomUUID(),
    type: 'vm',
    params: { server_uuid: server, image_uuid: randomUUID() },
});

/** Give the rows `keys` of the instances bucket this `_mtime` (as if written in one millisecond). */
function stamp(fake: FakeMoray, keys: string[], mtime: number): void {
    const rows = fake.state.buckets.get(INSTANCES)?.rows;
    for (const k of keys) {
        const r = rows?.get(k);
        if (r) {
            rows?.set(k, { ...r, _mtime: mtime });
        }
    }
}

function staleKeys(fake: FakeMoray): string[] {
    const out: string[] = [];
    for (const r of fake.state.buckets.get(INSTANCES)?.rows.values() ?? []) {
        if (staleIndexCopies(DEF, JSON.parse(r.json) as JsonObject).length > 0) {
            out.push(r.key);
        }
    }
    return out.sort();
}

const retrying = <R>(_what: string, fn: () => Promise<R>): Promise<R> => fn();

for (const tieOrder of ['write', 'reverse'] as const) {
    t.test(`a sweep pages across rows sharing one _mtime (tied rows in ${tieOrder} order)`, async (t) => {
        const { fake, raw } = await setup(t);
        fake.tieOrder = tieOrder;
        const keys: string[] = [];
        for (let i = 0; i < 40; i++) {
            const v = row212();
            await raw.putObject(INSTANCES, v.uuid as string, v);
            keys.push(v.uuid as string);
        }
        // Moray's clock is now; the rows say they were written a while ago,
        // many in one millisecond: 4 at T, 27 (more than a page) at T+1, 2 at
        // T+2 and 7 at T+3, with pages of 10 (boundaries inside T+1 and T+3).
        const T = Date.now() - 60_000;
        stamp(fake, keys.slice(0, 4), T);
        stamp(fake, keys.slice(4, 31), T + 1);
        stamp(fake, keys.slice(31, 33), T + 2);
        stamp(fake, keys.slice(33), T + 3);
        // One more row before the mark: not the sweep's business.
        const old = row212();
        await raw.putObject(INSTANCES, old.uuid as string, old);
        stamp(fake, [old.uuid as string], T - 1);
        t.equal(staleKeys(fake).length, 41, '41 rows lack their copies');

        const before = fake.requestsOf('findObjects').length;
        const done = await runSweep({ client: raw, def: DEF, metaBucket: 'sapi_meta', pageSize: 10, retrying }, T);
        t.same(staleKeys(fake), [old.uuid], 'every row changed since the mark has its copies; the older one is left');
        t.equal(done.rewritten, 40, 'each rewritten once');
        t.equal(done.done, true);
        const filters = fake
            .requestsOf('findObjects')
            .slice(before)
            .filter((r) => r.args[0] === INSTANCES)
            .map((r) => String(r.args[1]));
        t.notOk(
            fake
                .requestsOf('findObjects')
                .slice(before)
                .some((r) => (r.args[2] as { offset?: number }).offset),
            'no page is found by offset',
        );
        t.ok(
            filters.some((f) => f.includes(`(_mtime=${T + 1})`) && f.includes('_id>=')),
            `a page all of one _mtime goes on by _id (${filters.join(' ')})`,
        );
        const mark = await loadSweepMark(raw, 'sapi_meta', INSTANCES);
        t.ok(mark !== null && mark > T + 3, 'the mark is saved, past the rows swept');
        t.ok(mark !== null && mark <= Date.now(), 'and not past Moray’s clock');
    });
}

t.test('a sweep leaves rows with their copies alone, and a second one finds nothing', async (t) => {
    const { fake, raw } = await setup(t);
    const v = row212();
    await raw.putObject(INSTANCES, v.uuid as string, v);
    // As SAPI-TS writes it: with its copies.
    const good = withIndexCopies(DEF, row212());
    await raw.putObject(INSTANCES, good.uuid as string, good);
    const etag = (await raw.getObject(INSTANCES, good.uuid as string))?._etag;
    const first = await runSweep({ client: raw, def: DEF, metaBucket: 'sapi_meta', pageSize: 10, retrying }, 0);
    t.equal(first.rewritten, 1, 'the stale row rewritten');
    t.equal((await raw.getObject(INSTANCES, good.uuid as string))?._etag, etag, 'the other untouched');
    const writes = fake.requestsOf('batch').length;
    const mark = await loadSweepMark(raw, 'sapi_meta', INSTANCES);
    const second = await runSweep({ client: raw, def: DEF, metaBucket: 'sapi_meta', pageSize: 10, retrying }, mark ?? 0);
    t.equal(second.rewritten, 0, 'the next sweep rewrites nothing');
    t.equal(fake.requestsOf('batch').length, writes, 'no batch');
});

t.test('a mark never moves back', async (t) => {
    const { raw } = await setup(t);
    const m = await loadSweepMark(raw, 'sapi_meta', INSTANCES);
    t.type(m, 'number', 'a bucket SAPI-TS creates gets a mark at once');
    const at = (m ?? 0) + 60_000;
    await saveSweepMark(raw, 'sapi_meta', INSTANCES, at);
    await saveSweepMark(raw, 'sapi_meta', INSTANCES, at - 1000);
    t.equal(await loadSweepMark(raw, 'sapi_meta', INSTANCES), at, 'an earlier mark does not replace a later one');
    await saveSweepMark(raw, 'sapi_meta', INSTANCES, at + 1000);
    t.equal(await loadSweepMark(raw, 'sapi_meta', INSTANCES), at + 1000, 'a later one does');
    await raw.putObject('sapi_meta', sweepMetaKey(INSTANCES), { value: 'not json' });
    t.equal(await loadSweepMark(raw, 'sapi_meta', INSTANCES), null, 'an unreadable mark is no mark');
});

t.test("the feed's repairer rewrites what it is shown, unless it changed meanwhile or the backfill is not done", async (t) => {
    const { raw } = await setup(t);
    let backfilled = false;
    const repairer = new IndexRepairer({ client: () => raw, defs: [DEF], backfilled: () => backfilled });
    const a = row212();
    const b = row212();
    await raw.putObject(INSTANCES, a.uuid as string, a);
    await raw.putObject(INSTANCES, b.uuid as string, b);
    const read = async (v: JsonObject): Promise<{ key: string; value: JsonObject; mtime: number; etag: string }> => {
        const r = await raw.getObject(INSTANCES, v.uuid as string);
        return { key: r?.key as string, value: r?.value as JsonObject, mtime: Number(r?._mtime), etag: r?._etag as string };
    };
    const ra = await read(a);
    const rb = await read(b);
    repairer.rowsRead(INSTANCES, [ra, rb]);
    await repairer.idle();
    t.equal(repairer.repaired, 0, 'nothing before the backfill is done');

    backfilled = true;
    // b changes after the feed read it (2.1.2 writes it again).
    await raw.putObject(INSTANCES, b.uuid as string, { ...b, metadata: { AGAIN: true } });
    repairer.rowsRead(INSTANCES, [ra, rb]);
    await repairer.idle();
    t.equal(repairer.repaired, 1, 'one row rewritten');
    const ga = (await raw.getObject(INSTANCES, a.uuid as string))?.value as JsonObject;
    t.equal(ga.server_uuid, (a.params as JsonObject).server_uuid, 'a has its copies');
    const gb = (await raw.getObject(INSTANCES, b.uuid as string))?.value as JsonObject;
    t.same(gb.metadata, { AGAIN: true }, 'b keeps its newer write');
    t.equal(gb.server_uuid, undefined, '... which is left to the next poll (it reads it again)');
    repairer.rowsRead(INSTANCES, [await read(b)]);
    await repairer.idle();
    t.equal(((await raw.getObject(INSTANCES, b.uuid as string))?.value as JsonObject).server_uuid, (b.params as JsonObject).server_uuid, 'as it does');
});

t.test('a running SAPI sweeps again now and then, without making searches client-side again', async (t) => {
    const { fake, raw } = await setup(t);
    const store = new MorayStore({ client: raw, sweepEveryMs: 50, retryMinDelayMs: 10, retryMaxDelayMs: 50 });
    t.teardown(() => store.close());
    await store.init();
    await store.initializer?.reindexDone();
    const v = row212();
    // Written where no change feed looks (none runs here): only a sweep finds it.
    await raw.putObject(INSTANCES, v.uuid as string, v);
    const pending: string[][] = [];
    for (let i = 0; i < 400 && staleKeys(fake).length > 0; i++) {
        pending.push([...(store.initializer?.pendingFields(INSTANCES) ?? [])]);
        await new Promise((r) => setTimeout(r, 25));
    }
    t.same(staleKeys(fake), [], 'a later sweep gave the row its copies');
    t.ok(
        pending.every((p) => p.length === 0),
        'server and image searches stayed with Moray meanwhile',
    );
    t.equal(store.initializer?.isReady(INSTANCES), true, 'the bucket stays ready');
});
