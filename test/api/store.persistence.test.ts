// Persistence: everything written before a restart is there after it — objects, updates, deletes, list order, configs and their ETags.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { aManifest, anAgentService, anApplication, anInstance, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

interface Snapshot {
    lists: Record<string, unknown>;
    objects: Record<string, unknown>;
    configs: Record<string, { body: unknown; etag: string | null }>;
}

async function snapshot(h: Harness, instances: string[], others: string[]): Promise<Snapshot> {
    const lists: Record<string, unknown> = {};
    for (const path of ['/applications', '/services', '/instances', '/manifests']) {
        lists[path] = (await h.call('GET', path, { version: '~2' })).body;
    }
    const objects: Record<string, unknown> = {};
    for (const path of others) {
        const r = await h.call('GET', path, { version: '~2' });
        objects[path] = { status: r.status, body: r.body };
    }
    const configs: Snapshot['configs'] = {};
    for (const uuid of instances) {
        const r = await h.call('GET', `/configs/${uuid}`);
        configs[uuid] = { body: r.body, etag: r.headers.get('etag') };
    }
    return { lists, objects, configs };
}

t.test('a restart on the same data directory serves exactly the same data', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));

    const h1 = await startSapi({ dir, keepDir: true });
    const m1 = await aManifest(h1, { post_cmd_linux: 'systemctl restart x', template: { a: 1 } });
    const m2 = await aManifest(h1, { name: 'other' });
    const app = await anApplication(h1, {
        params: { ram: 1 },
        metadata: { DC: 'east' },
        metadata_schema: { type: 'object', properties: { DC: { type: 'string' } } },
        manifests: { one: m1.uuid },
        master: true,
    });
    const svc = await aService(h1, app.uuid, { metadata: { ROLE: 'x' }, manifests: { two: m2.uuid } });
    const agentSvc = await anAgentService(h1, app.uuid);
    const vm = await anInstance(h1, svc.uuid, { metadata: { I: 1 } });
    const agentUuid = randomUUID();
    await h1.call('POST', '/instances', {
        body: { service_uuid: agentSvc.uuid, uuid: agentUuid, params: { server_uuid: randomUUID(), image_uuid: randomUUID() } },
    });
    const gone = await anInstance(h1, svc.uuid);
    t.equal((await h1.call('PUT', `/applications/${app.uuid}`, { body: { action: 'update', metadata: { DC: 'west' } } })).status, 200);
    t.equal((await h1.call('PUT', `/instances/${vm.uuid}`, { body: { action: 'replace', metadata: { J: 2 } } })).status, 200);
    t.equal((await h1.call('DELETE', `/instances/${gone.uuid}`)).status, 204);
    t.equal((await h1.call('POST', '/loglevel', { body: { level: 'fatal' } })).status, 200);

    const others = [
        `/applications/${app.uuid}`,
        `/services/${svc.uuid}`,
        `/services/${agentSvc.uuid}`,
        `/instances/${vm.uuid}`,
        `/instances/${agentUuid}`,
        `/instances/${gone.uuid}`,
        `/instances/${vm.uuid}/payload`,
        `/manifests/${m1.uuid}`,
        `/manifests/${m2.uuid}`,
    ];
    const before = await snapshot(h1, [vm.uuid, agentUuid], others);
    t.equal((before.objects[`/instances/${gone.uuid}`] as { status: number }).status, 404, 'the deleted instance is gone');
    t.equal((before.lists['/instances'] as unknown[]).length, 2);
    await h1.close();

    const h2 = await startSapi({ dir, keepDir: true });
    t.teardown(h2.close);
    const after = await snapshot(h2, [vm.uuid, agentUuid], others);
    t.strictSame(after.lists, before.lists, 'every list, in the same order');
    t.strictSame(after.objects, before.objects, 'every object, and the deleted one stays deleted');
    t.strictSame(after.configs, before.configs, 'configs and their ETags are unchanged');

    const r = await h2.call('PUT', `/applications/${app.uuid}`, { body: { metadata: { DC: 5 } } });
    t.equal(r.status, 409, 'the stored metadata_schema still applies after the restart');
});
