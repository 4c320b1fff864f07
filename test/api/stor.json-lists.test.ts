// The JSON list fast path is a capability of a backend, found through the
// decorators by jsonLists(): offered exactly while the backend serving now
// has it, timed by the metrics decorator, and never through the local
// cache (whose lists come from Moray).

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { Metrics, InstrumentedStore } from '../../lib/metrics.js';
import { CachedStore } from '../../lib/stor/cached.js';
import { jsonLists } from '../../lib/stor/forwarding.js';
import { MorayStore } from '../../lib/stor/moray/index.js';
import { MultiDcStore } from '../../lib/stor/multi-dc.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import { ALL } from '../../lib/stor/store.js';
import { SwitchingStore } from '../../lib/stor/switching.js';
import { testLog } from '../lib/harness.js';

t.test('jsonLists() through decorators', async (t) => {
    const sqlite = new SqliteStore({ path: ':memory:' });
    await sqlite.init();
    t.teardown(() => sqlite.close());
    // Never connected: only its capabilities are looked at.
    const moray = new MorayStore({ connect: { host: '127.0.0.1', port: 1 } });
    t.teardown(() => moray.close());

    t.equal(jsonLists(sqlite), sqlite, 'the embedded store has it');
    t.equal(jsonLists(moray), null, 'moray has not');
    const cached = new CachedStore(moray, sqlite, testLog());
    const own = jsonLists(cached);
    t.ok(own !== null && own !== (sqlite as unknown), "the cache offers lists of its own (from its copy when current, else Moray's), not the embedded store's");
    t.equal(jsonLists(new MultiDcStore(sqlite, moray)), sqlite, "multi-DC lists are the local store's");

    const switching = new SwitchingStore(null);
    const metrics = new Metrics();
    const instrumented = new InstrumentedStore(switching, metrics);
    t.equal(jsonLists(switching), null, 'not while starting');
    t.equal(jsonLists(instrumented), null);
    switching.switchTo(sqlite);
    t.equal(jsonLists(switching), sqlite, 'offered once the backend has it');
    switching.switchTo(moray);
    t.equal(jsonLists(switching), null, 'withdrawn when the backend lacks it');
    t.equal(jsonLists(instrumented), null, 'through the metrics decorator too');
    switching.switchTo(sqlite);

    const uuid = randomUUID();
    await sqlite.put('sapi_applications', { uuid, name: 'x', owner_uuid: randomUUID(), secret: 1 });
    const lists = jsonLists(instrumented);
    if (!lists) {
        t.fail('offered again');
        return;
    }
    const page = await lists.findJson('sapi_applications', ALL, { limit: 10 }, ['secret']);
    t.same(page, await sqlite.findJson('sapi_applications', ALL, { limit: 10 }, ['secret']));
    t.notMatch(page.json[0], /secret/);
    const streamed: string[] = [];
    const stream = await lists.streamJson('sapi_applications', ALL, 10, ['secret']);
    for await (const chunk of stream.chunks) {
        streamed.push(...chunk);
    }
    t.same(streamed, page.json);
    t.equal(stream.total, page.total, 'with the number of matches');
    const text = await metrics.registry.metrics();
    t.match(text, /sapi_store_operation_duration_seconds_count\{backend="SqliteStorage",op="find",outcome="ok"\} 1\n/, 'a JSON page is timed as a find');
});

t.test('a starting SwitchingStore fails every operation as unavailable', async (t) => {
    const switching = new SwitchingStore(null, 'moray');
    t.equal(switching.name, 'Starting');
    t.equal(await switching.ping(), false);
    await switching.init();
    await t.rejects(switching.get('sapi_applications', randomUUID()), { name: 'StoreUnavailableError', message: /starting: waiting for moray/ });
    await t.rejects(switching.count('sapi_applications', ALL), { name: 'StoreUnavailableError' });
    await t.rejects(switching.iterate('sapi_applications', ALL)[Symbol.asyncIterator]().next(), { name: 'StoreUnavailableError' });
    await switching.close();
});
