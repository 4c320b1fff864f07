// Start-up order: createApp builds everything but starts no background
// work; an interrupted rollout is resumed only once the server listens.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { createApp } from '../../lib/app.js';
import { parseConfig } from '../../lib/config.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';
import { testLog } from '../lib/harness.js';

t.test('an interrupted rollout resumes after the port is bound, not before', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-order-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const config = parseConfig({ port: 0, host: '127.0.0.1', store: { path: join(dir, 'sapi.sqlite') } });
    const store = new SqliteStore({ path: config.store.path });
    await store.init();
    const uuid = randomUUID();
    await store.put('sapi_rollouts', {
        uuid,
        service_uuid: randomUUID(),
        service_name: 'vm-agent',
        image_uuid: randomUUID(),
        concurrency: 1,
        stall_factor: 3,
        stall_min_finished: 3,
        instance_timeout_ms: 60_000,
        state: 'running',
        created_at: new Date().toISOString(),
        counts: { pending: 0, running: 0, stalled: 0, succeeded: 0, failed: 0, canceled: 0 },
        warnings: [],
        items: [],
    });
    const app = await createApp({ config, log: testLog(), store });
    t.teardown(() => app.close());
    await new Promise((r) => setTimeout(r, 200));
    const before = await store.get('sapi_rollouts', uuid);
    t.equal(before?.value.resumed_at, undefined, 'not resumed while the server is not listening');

    await app.listen(0, '127.0.0.1');
    let resumed: unknown;
    for (let i = 0; i < 100 && resumed === undefined; i++) {
        await new Promise((r) => setTimeout(r, 50));
        resumed = (await store.get('sapi_rollouts', uuid))?.value.resumed_at;
    }
    t.type(resumed, 'string', 'resumed once listening');
});
