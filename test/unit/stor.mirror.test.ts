// The rule for when the local copy answers lists instead of Moray
// (lib/stor/mirror.ts), with a feed of the test's own and a real embedded
// store: only after a complete copy made under the feed's current chain,
// only once a poll begun after the list was asked for has been applied,
// never while rows written the 2.1.2 way are being seen, and never when
// Moray's count of the same filter differs.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { BUCKETS } from '../../lib/stor/buckets.js';
import type { FeedHandle } from '../../lib/stor/changes.js';
import { CATCH_UP_WAIT_MS, LocalMirror } from '../../lib/stor/mirror.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import { eq, ALL } from '../../lib/stor/store.js';

const INSTANCES = BUCKETS.instances.name;
const quiet = { info: () => undefined, warn: () => undefined };

/** A feed whose polls the test runs by hand: catchUp() waits for the next poll(). */
class HandFeed implements FeedHandle {
    chainNo: number | null = 1;
    private waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
    catchUp(): Promise<void> {
        return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
    }
    chain(): number | null {
        return this.chainNo;
    }
    get asked(): number {
        return this.waiting.length;
    }
    /** A poll: `apply` runs as the feed tells its rows, then the waiters are answered. */
    poll(mirror: LocalMirror, apply: () => void = () => undefined, ok = true): void {
        const waiters = this.waiting.splice(0);
        apply();
        if (ok && this.chainNo !== null) {
            mirror.polled(this.chainNo, performance.now());
        }
        for (const w of waiters) {
            if (ok) {
                w.resolve();
            } else {
                w.reject(new Error('poll failed'));
            }
        }
    }
}

interface World {
    local: SqliteStore;
    mirror: LocalMirror;
    feed: HandFeed;
    remote: { count: number | null };
    copies: number;
}

async function world(t: Test): Promise<World> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-mirror-'));
    const local = new SqliteStore({ path: join(dir, 'cache.sqlite') });
    await local.init();
    t.teardown(async () => {
        await local.close();
        rmSync(dir, { recursive: true, force: true });
    });
    const w: World = { local, feed: new HandFeed(), remote: { count: 0 }, copies: 0, mirror: null as unknown as LocalMirror };
    w.mirror = new LocalMirror({
        local,
        log: quiet,
        resync: () => {
            w.copies++;
        },
        remoteCount: () => (w.remote.count === null ? null : Promise.resolve(w.remote.count)),
        unindexed: () => w.remote.count === null,
    });
    w.mirror.attach(w.feed);
    return w;
}

/** A complete copy, made under the feed's chain. */
function copied(w: World): void {
    const c = w.mirror.beginCopy();
    w.mirror.endCopy(c.chain, true);
}

function row(value: Record<string, unknown>): { key: string; value: Record<string, unknown>; mtime: number; etag: string } {
    return { key: value.uuid as string, value, mtime: Date.now(), etag: randomUUID() };
}

/** Ask whether the mirror answers a list, run one poll, and return the answer. */
async function ask(w: World, apply?: () => void): Promise<boolean> {
    const answer = w.mirror.answers(INSTANCES, ALL);
    await new Promise((r) => setImmediate(r));
    w.feed.poll(w.mirror, apply);
    return answer;
}

t.test('no answer before a complete copy under the current chain', async (t) => {
    const w = await world(t);
    t.notOk(await w.mirror.answers(INSTANCES, ALL), 'nothing copied yet');
    w.feed.poll(w.mirror);
    t.equal(w.copies, 1, 'the first poll of the chain asks for a copy');
    const c = w.mirror.beginCopy();
    w.feed.chainNo = 2; // the feed started afresh during the copy
    w.mirror.endCopy(c.chain, true);
    t.notOk(w.mirror.keptCurrent(), 'a copy across a restart of the feed does not count');
    copied(w);
    t.ok(w.mirror.keptCurrent(), 'one under the current chain does');
    t.ok(await ask(w), 'and lists are answered from the copy after a poll');
});

t.test('a list waits for a poll begun after it, and sees what that poll applied', async (t) => {
    const w = await world(t);
    copied(w);
    const v = { uuid: randomUUID(), service_uuid: randomUUID(), type: 'agent', params: { server_uuid: randomUUID() }, server_uuid: '' };
    v.server_uuid = v.params.server_uuid;
    w.remote.count = 1;
    const answer = w.mirror.answers(INSTANCES, ALL);
    await new Promise((r) => setImmediate(r));
    t.equal(w.feed.asked, 1, 'it asked for a poll');
    w.feed.poll(w.mirror, () => w.mirror.apply(INSTANCES, [row(v)]));
    t.ok(await answer, 'answered from the copy');
    t.same(
        (await w.local.find(INSTANCES, eq('server_uuid', v.params.server_uuid))).items.map((s) => s.value.uuid),
        [v.uuid],
        'which holds the row',
    );
});

t.test('a failed poll, or a late one, sends the list to Moray', async (t) => {
    const w = await world(t);
    copied(w);
    const answer = w.mirror.answers(INSTANCES, ALL);
    await new Promise((r) => setImmediate(r));
    w.feed.poll(w.mirror, undefined, false);
    t.notOk(await answer, 'failed poll');
    const started = performance.now();
    t.notOk(await w.mirror.answers(INSTANCES, ALL), 'no poll at all');
    t.ok(performance.now() - started >= CATCH_UP_WAIT_MS - 50, 'it waited for it a while');
});

t.test('a row written the 2.1.2 way sends lists to Moray', async (t) => {
    const w = await world(t);
    copied(w);
    w.remote.count = 1;
    const old = { uuid: randomUUID(), service_uuid: randomUUID(), type: 'vm', params: { server_uuid: randomUUID() } };
    t.notOk(await ask(w, () => w.mirror.apply(INSTANCES, [row(old)])), 'the list that sees it');
    t.notOk(await w.mirror.answers(INSTANCES, ALL), 'and the next ones');
    t.equal(w.mirror.get(INSTANCES, old.uuid), null, 'GetConfig reads Moray too');
});

t.test("a count that differs from Moray's sends the list to Moray and asks for a copy", async (t) => {
    const w = await world(t);
    copied(w);
    w.remote.count = 3;
    t.notOk(await ask(w), 'the copy holds 0 rows, Moray 3');
    t.notOk(w.mirror.keptCurrent(), 'the copy no longer counts');
    const before = w.copies;
    w.feed.poll(w.mirror);
    t.equal(w.copies, before + 1, 'the next poll asks for a copy');
    w.remote.count = null;
    copied(w);
    t.ok(await ask(w), 'a filter Moray cannot count by index yet is answered from the copy');
});

t.test('a copy leaves alone what the feed wrote while it ran', async (t) => {
    const w = await world(t);
    const c = w.mirror.beginCopy();
    const uuid = randomUUID();
    w.mirror.deleted(INSTANCES, uuid);
    t.ok(c.skip(INSTANCES, uuid), 'a row deleted meanwhile is skipped by the copy');
    t.notOk(c.skip(INSTANCES, randomUUID()), 'others are not');
    w.mirror.endCopy(c.chain, true);
    t.ok(w.mirror.keptCurrent());
});

t.test('a search Moray could answer only by reading every row waits for the copy under way, then is answered from it', async (t) => {
    const w = await world(t);
    w.remote.count = null; // a field Moray is still indexing
    const c = w.mirror.beginCopy();
    let settled = false;
    const answer = w.mirror.answers(INSTANCES, ALL).then((v) => {
        settled = true;
        return v;
    });
    await new Promise((r) => setTimeout(r, 30));
    t.notOk(settled, 'it waits for the copy');
    t.equal(w.feed.asked, 0, 'without asking for a poll yet');
    w.mirror.endCopy(c.chain, true);
    while (w.feed.asked === 0) {
        await new Promise((r) => setImmediate(r));
    }
    w.feed.poll(w.mirror);
    t.ok(await answer, 'then it is answered from the copy');
});
