// sapiadm migrate on SAPI 2.1.2 records (no params.server_uuid or
// params.image_uuid): --dry-run changes nothing, a run backfills agents
// from CNAPI server.agents and VMs from VMAPI (and so makes them
// searchable), a second run has nothing to do. On the real 2.1.2 data it
// also rewrites the records whose params are complete but which lack the
// top-level index copies, and counts the two kinds of work apart.

import { randomUUID } from 'node:crypto';

import t, { type Test } from 'tap';

import { withIndexes } from '../../lib/model/instance-records.js';
import type { Instance } from '../../lib/model/types.js';
import { BUCKETS, staleIndexCopies } from '../../lib/stor/buckets.js';
import { startFakeCnapi, type FakeCnapi } from '../lib/fake-cnapi.js';
import { startFakeVmapi, type FakeVmapi } from '../lib/fake-vmapi.js';
import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';
import { exits, sapiadm } from '../lib/sapiadm.js';
import { imageOf, serverOf, storeAs212, type DumpInstance } from '../lib/sapi-212-dump.js';

/** A SAPI, a fake CNAPI and a fake VMAPI, closed at teardown. */
async function world(t: Test): Promise<{ h: Harness; cnapi: FakeCnapi; vmapi: FakeVmapi }> {
    const h = await startSapi();
    t.teardown(h.close);
    const cnapi = await startFakeCnapi();
    t.teardown(() => cnapi.close());
    const vmapi = await startFakeVmapi();
    t.teardown(() => vmapi.close());
    return { h, cnapi, vmapi };
}

t.test('migrate backfills legacy records', async (t) => {
    const { h, cnapi, vmapi } = await world(t);

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
    const stored = async (): Promise<unknown[]> => (await Promise.all(legacy.map((i) => h.store.get('sapi_instances', i.uuid)))).map((s) => s?.value);
    const original = await stored();
    const opts = { url: h.url, env: { CNAPI_URL: cnapi.url, VMAPI_URL: vmapi.url } };

    const [dry, noVmapi] = await Promise.all([sapiadm(['migrate', '--dry-run'], opts), sapiadm(['migrate', '--cnapi-url', cnapi.url], { url: h.url })]);
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
    t.same(Object.fromEntries(run.json.changes.map((c: { uuid: string; set: unknown; applied: boolean }) => [c.uuid, [c.set, c.applied]])), {
        [V1]: [{ server_uuid: SV, image_uuid: IV }, true],
        [V2]: [{ server_uuid: SV }, true],
        [AG1]: [{ server_uuid: S1, image_uuid: IA }, true],
        [AG2]: [{ image_uuid: IC }, true],
    });
    t.same(
        run.json.unresolved.map((u: { uuid: string }) => u.uuid),
        [V3],
    );

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

t.test('migrate on the SAPI 2.1.2 dump: missing params and missing index copies', async (t) => {
    const { h, cnapi, vmapi } = await world(t);

    // The store exactly as 2.1.2 left it: no top-level index copies anywhere.
    const { dump, nameOf, svcImage, agentsOn, unplaced, placedAt } = await storeAs212(h.store);
    for (const [uuid, agents] of agentsOn) cnapi.addServer({ uuid, agents });
    // VMAPI knows every vm; 22 of them have no params.image_uuid in SAPI.
    const vmImage = new Map<string, string>();
    for (const i of dump.filter((x) => x.type === 'vm')) {
        vmImage.set(i.uuid, imageOf(i) ?? svcImage(i));
        vmapi.addVm({ uuid: i.uuid, server_uuid: serverOf(i) as string, image_uuid: vmImage.get(i.uuid) as string });
    }

    const lacksParams = dump.filter((i) => !serverOf(i) || !imageOf(i));
    const lacksCopies = dump.filter((i) => staleIndexCopies(BUCKETS.instances, i).length > 0);
    const both = lacksParams.filter((i) => lacksCopies.includes(i));
    t.same([lacksParams.length, lacksCopies.length, both.length], [69, 243, 22], 'the dump: 69 lack params, 243 lack copies, 22 both');

    const stored = async (): Promise<unknown[]> => (await h.ctx.store.find('sapi_instances', { all: true })).items.map((x) => x.value);
    const original = await stored();
    const opts = { url: h.url, env: { CNAPI_URL: cnapi.url, VMAPI_URL: vmapi.url } };

    const [dry, dryJson] = await Promise.all([sapiadm(['migrate', '--dry-run'], opts), sapiadm(['--json', 'migrate', '--dry-run'], opts)]);
    exits(t, dry, 0, 'everything can be done');
    t.match(dry.stdout, 'Would backfill 69 instances (params) and reindex 221 (index copies) of 290 (dry run: nothing changed).');
    const agent = unplaced[0] as DumpInstance;
    const A = placedAt.get(agent.uuid) as string;
    t.match(dry.stdout, `${agent.uuid} (${nameOf(agent)} agent): would set params.server_uuid=${A} params.image_uuid=${svcImage(agent)}\n`, 'params missing');
    const vm = both[0] as DumpInstance;
    t.match(
        dry.stdout,
        `${vm.uuid} (${nameOf(vm)} vm): would set params.image_uuid=${vmImage.get(vm.uuid) as string}; would reindex too (the record lacks index copies)\n`,
        'both',
    );
    const indexOnly = lacksCopies.find((i) => !lacksParams.includes(i)) as DumpInstance;
    t.match(
        dry.stdout,
        `${indexOnly.uuid} (${nameOf(indexOnly)} ${indexOnly.type}): would reindex (the record lacks the index copies of its params)\n`,
        'index missing',
    );
    t.same(await stored(), original, '--dry-run changed nothing');

    exits(t, dryJson, 0);
    const kinds = (changes: { uuid: string; kinds: string[] }[]): Record<string, number> => {
        const out: Record<string, number> = {};
        for (const c of changes) out[c.kinds.join('+')] = (out[c.kinds.join('+')] ?? 0) + 1;
        return out;
    };
    t.same([dryJson.json.dry_run, dryJson.json.checked, dryJson.json.backfilled, dryJson.json.reindexed, dryJson.json.failed], [true, 290, 69, 221, 0]);
    t.same(kinds(dryJson.json.changes), { 'params-missing': 47, 'params-missing+index-missing': 22, 'index-missing': 221 });
    t.same(dryJson.json.unresolved, []);
    t.notOk(
        dryJson.json.changes.some((c: { applied: boolean }) => c.applied),
        'nothing applied in a dry run',
    );
    const unindexedBefore = await h.call('GET', '/instances?unindexed=true', { version: '~2' });
    t.equal(unindexedBefore.body.length, 243);

    const run = await sapiadm(['migrate'], opts);
    exits(t, run, 0);
    t.match(run.stdout, 'Backfilled 69 instances (params) and reindexed 221 (index copies) of 290.');
    t.match(
        run.stdout,
        `${vm.uuid} (${nameOf(vm)} vm): set params.image_uuid=${vmImage.get(vm.uuid) as string}; reindexed too (the record lacked index copies)\n`,
    );
    t.match(run.stdout, `${indexOnly.uuid} (${nameOf(indexOnly)} ${indexOnly.type}): reindexed (the record lacked the index copies of its params)\n`);

    const after = (await stored()) as Record<string, unknown>[];
    t.same(
        after.filter((v) => staleIndexCopies(BUCKETS.instances, v).length > 0).map((v) => v.uuid),
        [],
        'every record has its index copies now',
    );
    t.same(
        after.filter((v) => typeof v.server_uuid !== 'string' || typeof v.image_uuid !== 'string').map((v) => v.uuid),
        [],
        'and every instance has a server and an image',
    );
    const unindexedAfter = await h.call('GET', '/instances?unindexed=true', { version: '~2' });
    t.same(unindexedAfter.body, [], 'GET /instances?unindexed=true is empty');
    const onA = await h.call('GET', `/instances?server_uuid=${A}&type=agent`, { version: '~2' });
    t.ok(
        onA.body.some((i: { uuid: string }) => i.uuid === agent.uuid),
        'an agent registered without params is found on the server whose server.agents has it',
    );
    const original212 = new Map(dump.map((i) => [i.uuid, i]));
    const changedOtherwise = after.filter((v) => {
        const o = original212.get(v.uuid as string) as DumpInstance;
        const strip = (x: Record<string, unknown>): unknown => {
            const out: Record<string, unknown> = { ...x, params: { ...(x.params as Record<string, unknown> | undefined) } };
            for (const o of [out, out.params as Record<string, unknown>]) {
                delete o.server_uuid;
                delete o.image_uuid;
            }
            return out;
        };
        return JSON.stringify(strip(v)) !== JSON.stringify(strip(o));
    });
    t.same(
        changedOtherwise.map((v) => v.uuid),
        [],
        'nothing but the server, the image and their copies changed',
    );

    const [again, againJson] = await Promise.all([sapiadm(['migrate'], opts), sapiadm(['--json', 'migrate', '--dry-run'], opts)]);
    exits(t, again, 0, 'a second run finds nothing');
    t.equal(again.stdout, 'Nothing to migrate: all 290 instances have params.server_uuid and params.image_uuid.\n');
    t.same([againJson.json.changes, againJson.json.unresolved, againJson.json.backfilled, againJson.json.reindexed], [[], [], 0, 0]);
});

t.test('index copies only: no CNAPI or VMAPI needed; an unresolved vm is still reindexed', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const vmapi = await startFakeVmapi();
    t.teardown(() => vmapi.close());
    const manatee = (await aService(h, app.uuid, { name: 'manatee' })).uuid as string;
    const agentSvc = (await aService(h, app.uuid, { name: 'vm-agent', type: 'agent' })).uuid as string;
    const [S, I] = [randomUUID(), randomUUID()];
    const vmDone = { uuid: randomUUID(), service_uuid: manatee, type: 'vm', params: { server_uuid: S, image_uuid: I } } as Instance;
    const agentDone = { uuid: randomUUID(), service_uuid: agentSvc, type: 'agent', params: { server_uuid: S, image_uuid: I } } as Instance;
    for (const inst of [vmDone, agentDone]) await h.store.put('sapi_instances', inst); // no copies

    const dry = await sapiadm(['migrate', '--dry-run'], { url: h.url });
    exits(t, dry, 0, 'no CNAPI/VMAPI URL is needed to reindex');
    t.match(dry.stdout, 'Would reindex 2 instances (index copies) of 2 (dry run: nothing changed).');
    const run = await sapiadm(['--json', 'migrate'], { url: h.url });
    exits(t, run, 0);
    t.same(
        run.json.changes.map((c: { uuid: string; kinds: string[]; set: unknown; applied: boolean }) => [c.uuid, c.kinds, c.set, c.applied]).sort(),
        [
            [vmDone.uuid, ['index-missing'], {}, true],
            [agentDone.uuid, ['index-missing'], {}, true],
        ].sort(),
    );
    t.same([run.json.backfilled, run.json.reindexed], [0, 2]);
    const found = await h.call('GET', `/instances?server_uuid=${S}`, { version: '~2' });
    t.same(
        found.body.map((i: Instance) => i.params),
        [vmDone.params, agentDone.params],
        'params unchanged',
    );

    // A vm VMAPI does not know: its image cannot be filled, its server copy is still written.
    const lost = { uuid: randomUUID(), service_uuid: manatee, type: 'vm', params: { server_uuid: S } } as Instance;
    await h.store.put('sapi_instances', lost);
    const r = await sapiadm(['migrate'], { url: h.url, env: { VMAPI_URL: vmapi.url } });
    exits(t, r, 3, 'something could not be backfilled');
    t.match(r.stdout, `${lost.uuid} (manatee vm): reindexed (the record lacked the index copies of its params)\n`);
    t.match(r.stdout, `${lost.uuid} (manatee vm): cannot backfill params.image_uuid: VMAPI has no such VM\n`);
    t.match(r.stdout, 'Reindexed 1 instance (index copies) of 3; 1 instance could not be backfilled.');
    const stored = (await h.store.get('sapi_instances', lost.uuid))?.value as Record<string, unknown>;
    t.equal(stored.server_uuid, S, 'the server copy is written');
});
