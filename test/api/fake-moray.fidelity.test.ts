// The Moray test server against real Moray: SAPI 2.1.2's data as
// moray-server 2.5.0 gave it (test/fixtures/sapi-2.1.2-moray/dump.json,
// or $SAPI_212_DUMP) is loaded through the Moray protocol and
// must read back the same: bucket configs, values, etags. Then the
// upgrade's bucket update and reindex, and the server run on its own.

import { createRequire } from 'node:module';

import bunyan from 'bunyan';
import t, { type Test } from 'tap';

import { connectMoray, MorayRequestError, morayErrorName, type MorayClient } from '../../lib/stor/moray/client.js';
import type { JsonObject } from '../../lib/stor/store.js';
import { exited, freePort, spawnTs } from '../lib/child.js';
import { morayEtag, startFakeMoray, type FakeMoray, type FakeMorayOptions } from '../lib/fake-moray.js';
import { DUMP_PATH, readDump, type DumpBucketConfig, type DumpRow } from '../lib/sapi-212-dump.js';

const require = createRequire(import.meta.url);

const DUMP = DUMP_PATH;
const INSTANCES = 'sapi_instances';

type DumpConfig = DumpBucketConfig;

const dump = readDump(DUMP);
const BUCKET_NAMES = Object.keys(dump.buckets).sort();
const inIdOrder = (rows: DumpRow[]): DumpRow[] => [...rows].sort((a, b) => a._id - b._id);
const instances = inIdOrder(dump.buckets[INSTANCES]?.objects ?? []);

/** The most common params[field] among the 2.1.2 instances. */
function commonParam(field: string): string {
    const n = new Map<string, number>();
    for (const r of instances) {
        const v = (r.value.params as JsonObject | undefined)?.[field];
        if (typeof v === 'string') {
            n.set(v, (n.get(v) ?? 0) + 1);
        }
    }
    return [...n].sort((a, b) => b[1] - a[1])[0]?.[0] as string;
}

// ---- the npm moray client, for getBucket/listBuckets/reindexObjects as it returns them

interface RawBucket {
    name: string;
    mtime: Date;
    reindex_active?: unknown;
    [k: string]: unknown;
}

interface RawClient {
    on(event: string, fn: (...args: unknown[]) => void): void;
    getBucket(name: string, cb: (err: Error | null, b: RawBucket) => void): void;
    listBuckets(cb: (err: Error | null, b: RawBucket[]) => void): void;
    findObjects(bucket: string, filter: string, opts: object): { on(event: string, fn: (arg: never) => void): void };
    reindexObjects(bucket: string, count: number, opts: object, cb: (err: Error | null, r: unknown) => void): void;
    close(): void;
}

const moray = require('moray') as { createClient(opts: object): RawClient };

async function rawClient(t: Test, fake: FakeMoray): Promise<RawClient> {
    const c = moray.createClient({
        host: fake.host,
        port: fake.port,
        log: bunyan.createLogger({ name: 'fidelity', level: bunyan.FATAL + 1 }),
    });
    c.on('error', () => undefined);
    await new Promise<void>((resolve) => c.on('connect', () => resolve()));
    t.teardown(() => c.close());
    return c;
}

function rawGetBucket(c: RawClient, name: string): Promise<RawBucket> {
    return new Promise((resolve, reject) => c.getBucket(name, (err, b) => (err ? reject(err) : resolve(b))));
}

function rawListBuckets(c: RawClient): Promise<RawBucket[]> {
    return new Promise((resolve, reject) => c.listBuckets((err, b) => (err ? reject(err) : resolve(b))));
}

/** The Moray error name `p` rejects with (null: it resolves). */
async function failure(p: Promise<unknown>): Promise<string | null> {
    try {
        await p;
        return null;
    } catch (err) {
        return err instanceof MorayRequestError ? err.morayName : String(err);
    }
}

function withoutMtime<T extends { mtime?: unknown }>(b: T): Omit<T, 'mtime'> {
    const rest: Partial<T> = { ...b };
    delete rest.mtime;
    return rest as Omit<T, 'mtime'>;
}

// ---- setup

interface Env {
    fake: FakeMoray;
    client: MorayClient;
    raw: RawClient;
}

async function setup(t: Test, opts: FakeMorayOptions = {}): Promise<Env> {
    const fake = await startFakeMoray(opts);
    const client = await connectMoray({ host: fake.host, port: fake.port });
    t.teardown(async () => {
        await client.close();
        await fake.close();
    });
    return { fake, client, raw: await rawClient(t, fake) };
}

/** createBucket with the dumped index and options, then putObject per row (in _id order); the etags put returned. */
async function load(client: MorayClient, names: string[] = BUCKET_NAMES): Promise<Map<string, string>> {
    const etags = new Map<string, string>();
    for (const name of names) {
        const { config, objects } = dump.buckets[name] as { config: DumpConfig; objects: DumpRow[] };
        await client.createBucket(name, { index: config.index, options: config.options });
        for (const row of inIdOrder(objects)) {
            const { etag } = await client.putObject(name, row.key, row.value);
            etags.set(`${name}/${row.key}`, etag);
        }
    }
    return etags;
}

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

t.test('the dump is what SAPI 2.1.2 left in Moray', async (t) => {
    t.match(dump.moray, /moray-server 2\.5\.0/, 'written to moray-server 2.5.0');
    t.same(BUCKET_NAMES, ['sapi_applications', 'sapi_instances', 'sapi_manifests', 'sapi_services']);
    t.equal(instances.length, 290, '290 instances');
    t.notOk(
        instances.some((r) => 'server_uuid' in r.value || 'image_uuid' in r.value),
        'no instance has a top-level server_uuid or image_uuid',
    );
    for (const name of BUCKET_NAMES) {
        const cfg = dump.buckets[name]?.config as DumpConfig;
        t.notOk('reindex_active' in cfg, `${name}: getBucket gave no reindex_active`);
        t.same(cfg.options, { version: 0 }, `${name}: created without options, so version 0`);
        t.match(cfg.mtime, ISO_MS, `${name}: mtime is an ISO date with milliseconds`);
    }
});

t.test('the 2.1.2 data loads through the Moray protocol and reads back as Moray 2.5.0 gave it', async (t) => {
    const { client, raw } = await setup(t);
    const etags = await load(client);

    for (const name of BUCKET_NAMES) {
        const { config, objects } = dump.buckets[name] as { config: DumpConfig; objects: DumpRow[] };
        const b = await rawGetBucket(raw, name);
        t.strictSame(withoutMtime(b), withoutMtime(config), `${name}: getBucket equals the dumped config (no reindex_active)`);
        t.ok(b.mtime instanceof Date && ISO_MS.test(b.mtime.toISOString()), `${name}: mtime is a date, as the client makes of Moray's`);
        t.same(await client.getBucket(name), { name, index: config.index, version: 0, reindexActive: {} }, `${name}: as lib/stor sees it`);

        for (const row of objects) {
            t.equal(etags.get(`${name}/${row.key}`), row._etag, `${name}/${row.key}: putObject gives Moray's etag`);
        }
        const found = await client.findAll(name, '(uuid=*)', { limit: 1000, sort: { attribute: '_id', order: 'ASC' } });
        const want = inIdOrder(objects);
        t.equal(found.length, want.length, `${name}: findObjects finds every row`);
        t.strictSame(
            found.map((o) => o.key),
            want.map((r) => r.key),
            `${name}: in Moray's _id order`,
        );
        t.strictSame(
            found.map((o) => o.value),
            want.map((r) => r.value),
            `${name}: values equal the dump's`,
        );
        t.strictSame(
            found.map((o) => o._etag),
            want.map((r) => r._etag),
            `${name}: etags equal the dump's`,
        );
        t.ok(
            found.every((o) => Number.isInteger(o._id) && typeof o._mtime === 'number' && o._count === want.length),
            `${name}: _id, _mtime and _count on each record`,
        );
        const one = want[0] as DumpRow;
        const got = await client.getObject(name, one.key);
        t.strictSame(got?.value, one.value, `${name}: getObject value`);
        t.equal(got?._etag, one._etag, `${name}: getObject etag`);
    }
    const listed = await rawListBuckets(raw);
    t.strictSame(
        listed.map(withoutMtime).sort((a, b) => String(a.name).localeCompare(String(b.name))),
        BUCKET_NAMES.map((n) => withoutMtime(dump.buckets[n]?.config as DumpConfig)),
        'listBuckets gives the same configs',
    );
});

t.test('etags are CRC-32 of the JSON text, as Moray computes them', async (t) => {
    for (const name of BUCKET_NAMES) {
        const rows = dump.buckets[name]?.objects ?? [];
        t.ok(
            rows.every((r) => morayEtag(JSON.stringify(r.value)) === r._etag),
            `${name}: all ${rows.length} dumped etags`,
        );
    }
    t.equal(morayEtag(''), '00000000', 'empty text');
    t.match(morayEtag('{"a":"ÿ日本😀"}'), /^[0-9A-F]{8}$/, 'non-ASCII text: 8 upper-case hex digits');
});

t.test('upgrade: updateBucket adds server_uuid/image_uuid at version 1, reindex, 2.1.2 rows stay unfound', async (t) => {
    const { fake, client, raw } = await setup(t);
    await load(client);
    const config = dump.buckets[INSTANCES]?.config as DumpConfig;
    const created = (await rawGetBucket(raw, INSTANCES)).mtime.getTime();

    const index = { ...config.index, server_uuid: { type: 'string' as const }, image_uuid: { type: 'string' as const } };
    await client.updateBucket(INSTANCES, { index, options: { version: 1 } });
    const b = await rawGetBucket(raw, INSTANCES);
    t.strictSame(
        withoutMtime(b),
        { name: INSTANCES, index, pre: [], post: [], options: { version: 1 }, reindex_active: { 1: ['server_uuid', 'image_uuid'] } },
        'getBucket: version 1, the added fields being reindexed',
    );
    t.equal(b.mtime.getTime(), created, 'updateBucket leaves mtime alone');
    for (const other of BUCKET_NAMES.filter((n) => n !== INSTANCES)) {
        t.notOk('reindex_active' in (await rawGetBucket(raw, other)), `${other} (not updated): still no reindex_active`);
    }
    t.same((await client.getBucket(INSTANCES))?.reindexActive, { 1: ['server_uuid', 'image_uuid'] }, 'lib/stor sees the reindex');

    let processed = 0;
    let calls = 0;
    // Moray counts what remains after each batch unless asked not to (no_count, which lib/stor asks).
    const rawReindex = (count: number, opts: object): Promise<{ processed: number; remaining?: number }> =>
        new Promise((resolve, reject) =>
            raw.reindexObjects(INSTANCES, count, opts, (err, r) => (err ? reject(err) : resolve(r as { processed: number; remaining?: number }))),
        );
    for (;;) {
        const r = await rawReindex(100, {});
        calls++;
        if (r.processed === 0) {
            t.equal(r.remaining, 0, 'nothing remains');
            break;
        }
        processed += r.processed;
        t.equal(r.remaining, instances.length - processed, 'remaining counts down');
    }
    t.equal((await client.reindexObjects(INSTANCES, 100)).remaining, undefined, 'lib/stor asks for no count');
    t.equal(processed, instances.length, 'every row reindexed once');
    t.equal(calls, 4, '3 batches of up to 100, then processed 0');
    t.strictSame(withoutMtime(await rawGetBucket(raw, INSTANCES)).reindex_active, {}, 'reindex_active is {} once done');
    t.same((await client.getBucket(INSTANCES))?.reindexActive, {}, 'lib/stor: nothing being reindexed');

    const server = commonParam('server_uuid');
    const image = commonParam('image_uuid');
    t.ok(instances.filter((r) => (r.value.params as JsonObject | undefined)?.server_uuid === server).length > 1, 'a server with several instances');
    t.equal((await client.findAll(INSTANCES, `(server_uuid=${server})`)).length, 0, 'no 2.1.2 row is found by server_uuid');
    t.equal((await client.findAll(INSTANCES, `(image_uuid=${image})`)).length, 0, 'no 2.1.2 row is found by image_uuid');
    t.equal((await client.findAll(INSTANCES, '(server_uuid=*)')).length, 0, 'no 2.1.2 row has a server_uuid column');

    const after = await client.findAll(INSTANCES, '(uuid=*)', { limit: 1000, sort: { attribute: '_id', order: 'ASC' } });
    t.strictSame(
        after.map((o) => [o.value, o._etag]),
        instances.map((r) => [r.value, r._etag]),
        'reindexing changed no value and no etag',
    );

    const fresh = { uuid: 'fresh-instance', service_uuid: 'svc', type: 'vm', server_uuid: server, params: { server_uuid: server } };
    await client.putObject(INSTANCES, fresh.uuid, fresh);
    const byServer = await client.findAll(INSTANCES, `(server_uuid=${server})`);
    t.strictSame(
        byServer.map((o) => o.value),
        [fresh],
        'a row put with a top-level server_uuid is found, and only it',
    );

    // A 2.1.2 row rewritten with the top-level copy (as a backfill does): same _id, found.
    const old = instances.find((r) => (r.value.params as JsonObject | undefined)?.server_uuid === server) as DumpRow;
    const oldId = after.find((o) => o.key === old.key)?._id;
    await client.putObject(INSTANCES, old.key, { ...old.value, server_uuid: server });
    const rewritten = await client.getObject(INSTANCES, old.key);
    t.equal(rewritten?._id, oldId, 'putObject on an existing key keeps _id');
    t.equal(fake.state.buckets.get(INSTANCES)?.rows.get(old.key)?._rver, 1, '_rver is the bucket version after the put');
    t.same(
        (await client.findAll(INSTANCES, `(server_uuid=${server})`)).map((o) => o.key).sort(),
        [old.key, fresh.uuid].sort(),
        'the rewritten row is found by server_uuid',
    );
});

t.test('index columns, _id and _rver as moray-server sets them', async (t) => {
    const { fake, client, raw } = await setup(t);
    await client.createBucket('fid', { index: { n: { type: 'string' }, num: { type: 'number' } } });
    await client.putObject('fid', 'a', { n: 5, num: '7.5', params: { n: 'x' } });
    await client.putObject('fid', 'b', { n: null, list: [1] });
    await client.putObject('fid', 'c', { n: ['p', 'q'] });
    const a = await client.getObject('fid', 'a');
    t.strictSame(a?.value, { n: '5', num: 7.5, params: { n: 'x' } }, 'values come back with the index columns laid over them');
    t.strictSame((await client.getObject('fid', 'b'))?.value, { n: null, list: [1] }, 'a null stays null');
    t.strictSame((await client.getObject('fid', 'c'))?.value, { n: ['p', 'q'] }, 'an array stays an array');
    t.same(
        (await client.findAll('fid', '(n=x)')).map((o) => o.key),
        [],
        'a nested field is not indexed',
    );
    t.same(
        (await client.findAll('fid', '(n=p,q)')).map((o) => o.key),
        [],
        'an array is indexed as "p,q" but the value check sees the array',
    );
    t.same(
        (await client.findAll('fid', '(n=5)')).map((o) => o.key),
        ['a'],
        'a number in a string index',
    );
    t.same(
        (await client.findAll('fid', '(num>=7)')).map((o) => o.key),
        ['a'],
        'a number index',
    );
    t.equal(await failure(client.findAll('fid', '(other=1)')), 'InvalidQueryError', 'an unindexed field alone');
    t.equal(await failure(client.findAll('fid', '(&(other=1)(list=1))')), 'NotIndexedError', 'an and without an index');
    t.equal(await failure(client.findAll('fid', '(|(n=5)(other=1))')), 'NotIndexedError', 'an or with an unindexed branch');

    // _id: kept by an update, a new one after a delete, new on every update with trackModification.
    const idA = a?._id;
    await client.putObject('fid', 'a', { n: '6' });
    t.equal((await client.getObject('fid', 'a'))?._id, idA, 'an update keeps _id');
    await client.delObject('fid', 'a');
    await client.putObject('fid', 'a', { n: '6' });
    t.not((await client.getObject('fid', 'a'))?._id, idA, 'a put after a delete gets a new _id');
    await client.createBucket('tracked', { index: {}, options: { version: 1, trackModification: true } as never });
    await client.putObject('tracked', 'k', { v: 1 });
    const id1 = (await client.getObject('tracked', 'k'))?._id;
    await client.putObject('tracked', 'k', { v: 2 });
    t.ok(((await client.getObject('tracked', 'k'))?._id ?? 0) > (id1 ?? 0), 'trackModification: an update gets a new _id');

    // _rver: set only while the bucket has reindex state.
    const rows = (): Map<string, { _rver: number | null }> => fake.state.buckets.get('fid')?.rows ?? new Map();
    t.equal(rows().get('b')?._rver, null, 'no reindex state: _rver NULL');
    t.notOk('reindex_active' in (await rawGetBucket(raw, 'fid')), 'no reindex_active before any updateBucket');
    await client.updateBucket('fid', { index: { n: { type: 'string' }, num: { type: 'number' }, m: { type: 'string' } } });
    t.notOk('reindex_active' in (await rawGetBucket(raw, 'fid')), 'a version-0 update sets no reindex state');
    await client.putObject('fid', 'b', { n: 'b2', m: 'x' });
    t.equal(rows().get('b')?._rver, null, 'still NULL after a put');
    t.same(
        (await client.findAll('fid', '(m=*)')).map((o) => o.key),
        ['b'],
        'the new column is filled by a put',
    );
    await client.updateBucket('fid', {
        index: { n: { type: 'string' }, num: { type: 'number' }, m: { type: 'string' }, z: { type: 'string' } },
        options: { version: 2 },
    });
    await client.putObject('fid', 'c', { n: 'c2' });
    t.equal(rows().get('c')?._rver, 2, 'during a reindex a put sets _rver');
    while ((await client.reindexObjects('fid', 10)).processed > 0) {
        // until done
    }
    await client.putObject('fid', 'c', { n: 'c3' });
    t.equal(rows().get('c')?._rver, 2, 'after it (reindex_active {}) too');
});

t.test('excludeReindexingFields: fields being reindexed are left out of the SQL, as moray-server 2.x', async (t) => {
    const { client } = await setup(t, { excludeReindexingFields: true });
    await load(client, [INSTANCES]);
    const config = dump.buckets[INSTANCES]?.config as DumpConfig;
    const index = { ...config.index, server_uuid: { type: 'string' as const } };
    await client.updateBucket(INSTANCES, { index, options: { version: 1 } });
    const server = commonParam('server_uuid');
    await client.putObject(INSTANCES, 'fresh', { uuid: 'fresh', service_uuid: 'svc', type: 'vm', server_uuid: server });

    t.equal(await failure(client.findAll(INSTANCES, `(server_uuid=${server})`)), 'InvalidQueryError', 'alone: no SQL clause');
    t.same(
        (await client.findAll(INSTANCES, `(&(type=vm)(server_uuid=${server}))`)).map((o) => o.key),
        ['fresh'],
        'with an indexed field: checked against the value',
    );
    while ((await client.reindexObjects(INSTANCES, 100)).processed > 0) {
        // until done
    }
    t.same(
        (await client.findAll(INSTANCES, `(server_uuid=${server})`)).map((o) => o.key),
        ['fresh'],
        'usable once reindexed; the 2.1.2 rows are still not found',
    );
});

t.test('requireIndexes: a field without a usable index is NotIndexedError', async (t) => {
    const { client, raw } = await setup(t);
    await client.createBucket('ri', { index: { a: { type: 'string' } } });
    await client.updateBucket('ri', { index: { a: { type: 'string' }, b: { type: 'string' } }, options: { version: 1 } });
    const find = (filter: string): Promise<string | null> =>
        new Promise((resolve) => {
            const req = raw.findObjects('ri', filter, { requireIndexes: true });
            req.on('error', (err: Error) => resolve(morayErrorName(err)));
            req.on('end', () => resolve(null));
        });
    t.equal(await find('(a=1)'), null, 'an indexed field');
    t.equal(await find('(c=1)'), 'NotIndexedError', 'an unindexed field');
    t.equal(await find('(b=1)'), 'NotIndexedError', 'a field being reindexed');
});

// ---- on its own

function listeningPort(proc: ReturnType<typeof spawnTs>): Promise<number> {
    return new Promise((resolve, reject) => {
        let out = '';
        let err = '';
        const timer = setTimeout(() => reject(new Error(`no "listening on" line: ${out}${err}`)), 60_000);
        proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
        proc.stdout?.on('data', (d: Buffer) => {
            out += d.toString();
            const m = /^listening on (\d+)$/m.exec(out);
            if (m) {
                clearTimeout(timer);
                resolve(Number(m[1]));
            }
        });
        proc.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`exited (${String(code)}) before listening: ${out}${err}`));
        });
    });
}

t.test('moray-test-server runs on its own and exits cleanly on a signal', async (t) => {
    const fixed = await freePort();
    for (const [signal, arg] of [
        ['SIGTERM', '0'],
        ['SIGINT', String(fixed)],
    ] as const) {
        const proc = spawnTs('test/lib/moray-test-server.ts', ['--port', arg]);
        t.teardown(() => {
            proc.kill('SIGKILL');
        });
        const port = await listeningPort(proc);
        if (arg === '0') {
            t.ok(port > 0, `--port 0: prints the port it bound (${port})`);
        } else {
            t.equal(port, fixed, `--port ${fixed}: listens there`);
        }
        const client = await connectMoray({ host: '127.0.0.1', port });
        await client.ping();
        t.pass('the moray client pings it');
        await client.createBucket('b', { index: { k: { type: 'string' } } });
        const { etag } = await client.putObject('b', 'x', { k: 'v' });
        t.equal((await client.getObject('b', 'x'))?._etag, etag, 'and stores objects');
        await client.close();
        const code = exited(proc);
        proc.kill(signal);
        t.equal(await code, 0, `${signal}: exit status 0`);
    }
});

t.test('moray-test-server rejects bad arguments', async (t) => {
    const proc = spawnTs('test/lib/moray-test-server.ts', ['--port', 'x']);
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    t.equal(await exited(proc), 2, 'exit status 2');
    t.match(err, /usage: moray-test-server/, 'with the usage');
});
