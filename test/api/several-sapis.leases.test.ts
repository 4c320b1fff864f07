// Leases (leases/leases.ts): in memory and in Moray, with a fake clock where
// expiry matters. Exactly one taker of a free or expired key; a live one is
// busy for everyone; renewal, loss, release; a store that fails is an error
// (and a 503 for a server lock), never a lease taken or free.

import t from 'tap';

import { ServerLocks } from '../../lib/deploy/server-locks.js';
import { hasCode } from '../../lib/errors.js';
import { memoryLeases, StoreLeases, type Leases } from '../../lib/leases/leases.js';
import { MemoryLeaseBackend, type LeaseBackend } from '../../lib/stor/lease-backend.js';
import { StoreUnavailableError } from '../../lib/stor/errors.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { startFakeMoray, type FakeMoray } from '../lib/fake-moray.js';

const TTL = 1000;

interface Two {
    a: Leases;
    b: Leases;
    clock: { now: number };
}

type MakeTwo = (t: { teardown(fn: () => unknown): void }) => Promise<Two>;

async function morayBackend(t: { teardown(fn: () => unknown): void }): Promise<{ fake: FakeMoray; backend: LeaseBackend }> {
    const fake = await startFakeMoray();
    const store = new MorayStore({ connect: { host: fake.host, port: fake.port, connectTimeoutMs: 1000 }, retryMinDelayMs: 10, retryMaxDelayMs: 100 });
    await store.init();
    t.teardown(async () => {
        await store.close();
        await fake.close();
    });
    return { fake, backend: store.leaseBackend() };
}

const backends: [string, MakeTwo][] = [
    [
        'memory',
        // One process's memory: two Leases objects stand for two callers sharing it.
        async () => {
            const clock = { now: 1_000_000 };
            const a = memoryLeases(TTL, { now: () => clock.now, owner: 'a' });
            const b = new StoreLeases({ backend: a.backend, ttlMs: TTL, now: () => clock.now, owner: 'b' });
            return { a, b, clock };
        },
    ],
    [
        'moray',
        async (t) => {
            const { backend } = await morayBackend(t);
            const clock = { now: Date.now() };
            const a = new StoreLeases({ backend, ttlMs: TTL, now: () => clock.now, owner: 'a' });
            const b = new StoreLeases({ backend, ttlMs: TTL, now: () => clock.now, owner: 'b' });
            return { a, b, clock };
        },
    ],
];

for (const [name, two] of backends) {
    t.test(`${name}: one holder; busy while live, free once expired or released`, async (t) => {
        const { a, b, clock } = await two(t);
        const ha = await a.tryAcquire('server/s1', 'install of x');
        t.ok(ha, 'a takes a free key');
        t.equal(await b.tryAcquire('server/s1', 'other'), null, 'b cannot take it');
        t.equal(await a.tryAcquire('server/s1', 'again'), null, 'nor can a again (a live lease is busy for everyone)');
        const h = await b.holder('server/s1');
        t.equal(h?.owner, 'a');
        t.equal(h?.operation, 'install of x');
        t.ok(await b.tryAcquire('server/s2', 'other key'), 'another key is independent');

        clock.now += TTL - 1;
        t.ok(await ha?.renew(), 'renewed before expiry');
        clock.now += TTL - 1;
        t.equal(await b.tryAcquire('server/s1', 'other'), null, 'the renewal extended it');

        clock.now += 1;
        t.equal(await b.holder('server/s1'), null, 'expired: no holder');
        const hb = await b.tryAcquire('server/s1', 'takeover');
        t.ok(hb, 'b takes the expired lease');
        t.equal((await a.holder('server/s1'))?.owner, 'b');
        t.equal(await ha?.renew(), false, "a's renewal fails: lost");
        t.equal(ha?.lost.aborted, true, 'and its signal says so');
        await ha?.release();
        t.equal((await a.holder('server/s1'))?.owner, 'b', "a's release of a lost lease leaves b's alone");

        await hb?.release();
        t.equal(await a.holder('server/s1'), null, 'released: free');
        t.equal(hb?.lost.aborted, false, 'a release is not a loss');
        t.equal(await hb?.renew(), false, 'a released lease is not renewed');
        t.ok(await a.tryAcquire('server/s1', 'again'), 'taken again');
    });

    t.test(`${name}: racing takers of a free or expired key, exactly one wins`, async (t) => {
        const { a, b, clock } = await two(t);
        const race = async (): Promise<number> => {
            const got = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).tryAcquire('rollout/r1', `taker ${i}`)));
            return got.filter((h) => h !== null).length;
        };
        t.equal(await race(), 1, 'free key');
        clock.now += TTL;
        t.equal(await race(), 1, 'expired key');
    });
}

t.test('keepAlive renews every ttl/3 until stopped', async (t) => {
    const { backend } = await morayBackend(t);
    const a = new StoreLeases({ backend, ttlMs: 300, owner: 'a' });
    const b = new StoreLeases({ backend, ttlMs: 300, owner: 'b' });
    const h = await a.tryAcquire('rollout/r', 'drive');
    t.ok(h);
    const stop = a.keepAlive(h as NonNullable<typeof h>);
    await new Promise((r) => setTimeout(r, 700));
    t.equal((await b.holder('rollout/r'))?.owner, 'a', 'still held after more than two TTLs');
    stop();
    const until = Date.now() + 10_000;
    let free = false;
    while (!free && Date.now() < until) {
        free = (await b.tryAcquire('rollout/r', 'takeover')) !== null;
        await new Promise((r) => setTimeout(r, 50));
    }
    t.ok(free, 'once renewals stop, the lease expires and another process takes it');
});

t.test('a holder whose renewals hang or fail gives the lease up before it expires', async (t) => {
    // Renewals that never answer (a store that stopped answering), then fail.
    const inner = new MemoryLeaseBackend();
    let mode: 'ok' | 'hang' | 'fail' = 'ok';
    const backend: LeaseBackend = {
        get: (key) => inner.get(key),
        put: (record, etag) =>
            mode === 'ok'
                ? inner.put(record, etag)
                : mode === 'hang'
                  ? new Promise<string>(() => undefined)
                  : Promise.reject(new StoreUnavailableError('down')),
        del: (key, etag) => inner.del(key, etag),
    };
    const clock = { now: 1_000_000 };
    const a = new StoreLeases({ backend, ttlMs: 300, owner: 'a', now: () => clock.now });
    for (const how of ['hang', 'fail'] as const) {
        mode = 'ok';
        const h = await a.tryAcquire(`rollout/${how}`, 'drive');
        t.ok(h);
        const handle = h as NonNullable<typeof h>;
        const expiry = Date.parse((await a.holder(handle.key))?.expires_at ?? '');
        mode = how;
        const stop = a.keepAlive(handle);
        // Just past two thirds of the TTL: not expired for anyone yet.
        clock.now = expiry - 99;
        const until = Date.now() + 10_000;
        while (!handle.lost.aborted && Date.now() < until) {
            await new Promise((r) => setTimeout(r, 20));
        }
        stop();
        t.ok(handle.lost.aborted, `renewals that ${how}: the holder knows the lease is lost`);
        t.ok(clock.now < expiry, 'and knew it before the lease expired');
    }
});

t.test('a store that fails: errors, never a lease taken or free; server locks answer 503', async (t) => {
    const { fake, backend } = await morayBackend(t);
    const a = new StoreLeases({ backend, ttlMs: TTL, owner: 'a' });
    const h = await a.tryAcquire('server/s1', 'install');
    t.ok(h);
    fake.failNext('getObject', 'NoDatabasePeersError', { count: 2 });
    await t.rejects(a.tryAcquire('server/s1', 'x'), StoreUnavailableError, 'tryAcquire fails');
    await t.rejects(a.holder('server/s1'), StoreUnavailableError, 'holder fails');

    const locks = new ServerLocks(a);
    fake.failNext('getObject', 'NoDatabasePeersError');
    const err = await locks.acquire('s2', 'install of y').then(
        () => null,
        (e: unknown) => e,
    );
    t.ok(hasCode(err, 'StoreUnavailable'), 'the lock of a server cannot be taken: 503 StoreUnavailable');
    t.equal((err as { statusCode?: number } | null)?.statusCode, 503);

    fake.failNext('putObject', 'NoDatabasePeersError');
    await t.rejects(h?.renew() as Promise<boolean>, StoreUnavailableError, 'a renewal that cannot reach the store rejects (the lease is not known lost)');
    t.equal(h?.lost.aborted, false);
    t.equal(await h?.renew(), true, 'and the next one succeeds');
});

t.test('server locks: 409 naming the holder, or a wait for it', async (t) => {
    const { backend } = await morayBackend(t);
    const one = new ServerLocks(new StoreLeases({ backend, ttlMs: TTL, owner: 'sapi-1' }));
    const two = new ServerLocks(new StoreLeases({ backend, ttlMs: TTL, owner: 'sapi-2' }));
    const release = await one.acquire('s1', 'upgrade of cn-agent to image X');
    const err = await two.acquire('s1', 'install of vm-agent').then(
        () => null,
        (e: unknown) => e,
    );
    t.ok(hasCode(err, 'OperationInProgress'), '409 OperationInProgress');
    t.match((err as Error).message, /server s1 is busy: upgrade of cn-agent to image X/);
    let got = false;
    const waiting = two.acquireWait('s1', 'rollout item', 20).then((r) => {
        got = true;
        return r;
    });
    await new Promise((r) => setTimeout(r, 100));
    t.equal(got, false, 'the waiter waits while the lock is held');
    release();
    const r2 = await waiting;
    t.equal((await one.current('s1'))?.operation, 'rollout item', 'then takes it');
    r2();
    const until = Date.now() + 5000;
    while ((await one.current('s1')) !== null && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 20));
    }
    t.equal(await one.current('s1'), null, 'given back');
});
