// sapiadm migrate on SAPI 2.1.2 records (no params.server_uuid or
// params.image_uuid): --dry-run changes nothing, a run backfills agents
// from CNAPI server.agents and VMs from VMAPI (and so makes them
// searchable), a second run has nothing to do.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { withIndexes } from '../../lib/model/instances.js';
import type { Instance } from '../../lib/model/types.js';
import { startFakeCnapi } from '../lib/fake-cnapi.js';
import { startFakeVmapi } from '../lib/fake-vmapi.js';
import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';
import { exits, sapiadm } from '../lib/sapiadm.js';

t.test('migrate backfills legacy records', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const cnapi = await startFakeCnapi();
    t.teardown(() => cnapi.close());
    const vmapi = await startFakeVmapi();
    t.teardown(() => vmapi.close());

    const app = await anApplication(h);
    const manatee = (await aService(h, app.uuid, { name: 'manatee' })).uuid as string;
    const vmAgent = (await aService(h, app.uuid, { name: 'vm-agent', type: 'agent' })).uuid as string;
    const cfgAgent = (await aService(h, app.uuid, { name: 'config-agent', type: 'agent' })).uuid as string;

    const [V1, V2, V3, AG1, AG2, DONE] = Array.from({ length: 6 }, () => randomUUID()) as [string, string, string, string, string, string];
    const [SV, S1, IV, IA, IC] = Array.from({ length: 5 }, () => randomUUID()) as [string, string, string, string, string];
    vmapi.addVm({ uuid: V1, server_uuid: SV, image_uuid: IV });
    vmapi.addVm({ uuid: V2, server_uuid: SV, image_uuid: IV });
    cnapi.addServer({
        uuid: S1,
        agents: [
            { name: 'vm-agent', version: '1.0.0', image_uuid: IA, uuid: AG1 },
            { name: 'config-agent', version: '1.0.0', image_uuid: IC, uuid: randomUUID() },
        ],
    });

    // As SAPI 2.1.2 wrote them.
    const legacy: Instance[] = [
        { uuid: V1, service_uuid: manatee, type: 'vm', params: { alias: 'manatee0' } },
        { uuid: V2, service_uuid: manatee, type: 'vm', params: { alias: 'manatee1', image_uuid: IV } },
        { uuid: V3, service_uuid: manatee, type: 'vm', params: { alias: 'manatee2' } },
        { uuid: AG1, service_uuid: vmAgent, type: 'agent' },
        { uuid: AG2, service_uuid: cfgAgent, type: 'agent', params: { server_uuid: S1 } },
        { uuid: DONE, service_uuid: manatee, type: 'vm', params: { server_uuid: SV, image_uuid: IV } },
    ];
    for (const inst of legacy) {
        await h.store.put('sapi_instances', withIndexes(inst));
    }
    const stored = async (): Promise<unknown[]> =>
        (await Promise.all(legacy.map((i) => h.store.get('sapi_instances', i.uuid)))).map((s) => s?.value);
    const original = await stored();
    const opts = { url: h.url, env: { CNAPI_URL: cnapi.url, VMAPI_URL: vmapi.url } };

    const [dry, noVmapi] = await Promise.all([
        sapiadm(['migrate', '--dry-run'], opts),
        sapiadm(['migrate', '--cnapi-url', cnapi.url], { url: h.url }),
    ]);
    exits(t, dry, 3, 'one instance cannot be backfilled');
    t.match(dry.stdout, `${V1} (manatee vm): would set params.server_uuid=${SV} params.image_uuid=${IV}`);
    t.match(dry.stdout, `${V2} (manatee vm): would set params.server_uuid=${SV}\n`);
    t.match(dry.stdout, `${AG1} (vm-agent agent): would set params.server_uuid=${S1} params.image_uuid=${IA}`);
    t.match(dry.stdout, `${AG2} (config-agent agent): would set params.image_uuid=${IC}`);
    t.match(dry.stdout, `${V3} (manatee vm): cannot backfill params.server_uuid, params.image_uuid: VMAPI has no such VM`);
    t.notMatch(dry.stdout, DONE, 'complete instances are not mentioned');
    t.match(dry.stdout, 'Would backfill 4 instances of 6; 1 instance could not be backfilled (dry run: nothing changed).');
    t.same(await stored(), original, '--dry-run changed nothing');
    exits(t, noVmapi, 2, 'VMAPI is needed for vm instances');
    t.match(noVmapi.stderr, '3 vm instances need VMAPI: give --vmapi-url URL or set VMAPI_URL');

    const run = await sapiadm(['--json', 'migrate'], opts);
    exits(t, run, 3);
    t.equal(run.json.dry_run, false);
    t.same(
        Object.fromEntries(run.json.changes.map((c: { uuid: string; set: unknown; applied: boolean }) => [c.uuid, [c.set, c.applied]])),
        {
            [V1]: [{ server_uuid: SV, image_uuid: IV }, true],
            [V2]: [{ server_uuid: SV }, true],
            [AG1]: [{ server_uuid: S1, image_uuid: IA }, true],
            [AG2]: [{ image_uuid: IC }, true],
        },
    );
    t.same(run.json.unresolved.map((u: { uuid: string }) => u.uuid), [V3]);

    const onSV = await h.call('GET', `/instances?server_uuid=${SV}`, { version: '~2' });
    t.same(onSV.body.map((i: { uuid: string }) => i.uuid).sort(), [V1, V2, DONE].sort(), 'backfilled VMs are found by server');
    const onS1 = await h.call('GET', `/instances?server_uuid=${S1}&type=agent`, { version: '~2' });
    t.same(
        Object.fromEntries(onS1.body.map((i: { uuid: string; params: { image_uuid: string } }) => [i.uuid, i.params.image_uuid])),
        { [AG1]: IA, [AG2]: IC },
        'backfilled agents are found by server, with their images',
    );
    const v1 = await h.call('GET', `/instances/${V1}`);
    t.same(v1.body.params, { alias: 'manatee0', server_uuid: SV, image_uuid: IV }, 'other params kept');

    t.equal((await h.call('DELETE', `/instances/${V3}`)).status, 204);
    const again = await sapiadm(['migrate'], opts);
    exits(t, again, 0, 'idempotent');
    t.equal(again.stdout, 'Nothing to migrate: all 5 instances have params.server_uuid and params.image_uuid.\n');
});
