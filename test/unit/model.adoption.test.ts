// Agent self-adoption (lib/model/adoption.ts) on an in-memory store: one
// instance per (service, server). The same uuid is an upsert; a new uuid
// replaces every instance of that service on that server, carrying their
// metadata and manifests over; an agent without params.server_uuid is
// recorded unplaced and replaces nothing; a uuid held by another type or
// service is refused.

import { randomUUID } from 'node:crypto';

import t, { type Test } from 'tap';

import { adoptAgent } from '../../lib/model/adoption.js';
import type { Ctx } from '../../lib/model/context.js';
import { withIndexes } from '../../lib/model/instance-records.js';
import { createInstance, instanceRecords } from '../../lib/model/instances.js';
import { BUCKET_OF } from '../../lib/model/objects.js';
import type { Dict, Instance, Service } from '../../lib/model/types.js';
import { ALL, and, eq, type BatchOp, type Store } from '../../lib/stor/store.js';
import { aManifest, anAgentService, anApplication, aService, isSapiError, modelCtx, rejection, reqInfo } from '../lib/model-ctx.js';

interface World {
    ctx: Ctx;
    agent: Service;
    otherAgent: Service;
    vm: Service;
}

async function world(t: Test, opts: Parameters<typeof modelCtx>[1] = {}): Promise<World> {
    const ctx = await modelCtx(t, opts);
    const app = await anApplication(ctx);
    return {
        ctx,
        agent: await anAgentService(ctx, app.uuid, { name: 'vm-agent' }),
        otherAgent: await anAgentService(ctx, app.uuid, { name: 'cmon-agent' }),
        vm: await aService(ctx, app.uuid, { name: 'imgapi' }),
    };
}

function agentInst(service: Service, params: Dict | undefined, extra: Partial<Instance> = {}): Instance {
    const inst: Instance = { uuid: randomUUID(), service_uuid: service.uuid, type: 'agent', ...extra };
    if (params) {
        inst.params = params;
    }
    return inst;
}

/** A record written as SAPI 2.1.2 could leave it (several per server). */
async function legacy(ctx: Ctx, inst: Instance): Promise<Instance> {
    return (await ctx.store.put(BUCKET_OF.instance, withIndexes(inst), { etag: null })).value;
}

async function all(ctx: Ctx): Promise<Instance[]> {
    return (await ctx.store.find<Instance>(BUCKET_OF.instance, ALL)).items.map((s) => s.value).sort((a, b) => a.uuid.localeCompare(b.uuid));
}

async function onServer(ctx: Ctx, service: Service, server: string): Promise<string[]> {
    const found = await ctx.store.find<Instance>(BUCKET_OF.instance, and(eq('service_uuid', service.uuid), eq('server_uuid', server)));
    return found.items.map((s) => s.value.uuid);
}

t.test('a first adoption creates the record, with its index copies', async (t) => {
    const { ctx, agent } = await world(t);
    const server = randomUUID();
    const image = randomUUID();
    const inst = agentInst(agent, { server_uuid: server, image_uuid: image });
    const out = await adoptAgent(ctx, inst);
    t.strictSame(out, {
        uuid: inst.uuid,
        service_uuid: agent.uuid,
        params: { server_uuid: server, image_uuid: image },
        type: 'agent',
        server_uuid: server,
        image_uuid: image,
    });
    t.strictSame(await all(ctx), [out], 'stored as returned');
    t.strictSame(await onServer(ctx, agent, server), [inst.uuid]);
});

t.test('the same uuid again is an upsert: params merged, metadata, manifests and master kept', async (t) => {
    const { ctx, agent } = await world(t);
    const m = await aManifest(ctx);
    const server = randomUUID();
    const uuid = randomUUID();
    await legacy(ctx, {
        uuid,
        service_uuid: agent.uuid,
        type: 'agent',
        params: { server_uuid: server, image_uuid: randomUUID(), extra: 'kept' },
        metadata: { LOG_LEVEL: 'debug' },
        manifests: { agent: m.uuid },
        master: true,
    });
    const image = randomUUID();
    const out = await adoptAgent(ctx, agentInst(agent, { server_uuid: server, image_uuid: image }, { uuid, metadata: { NEW: 1 } }));
    t.strictSame(out.params, { server_uuid: server, image_uuid: image, extra: 'kept' }, 'new params win, others stay');
    t.strictSame(out.metadata, { LOG_LEVEL: 'debug', NEW: 1 });
    t.strictSame(out.manifests, { agent: m.uuid });
    t.equal(out.master, true);
    t.equal(out.image_uuid, image, 'the index copy follows');
    t.equal((await all(ctx)).length, 1, 'still one record');

    const again = await adoptAgent(ctx, agentInst(agent, { server_uuid: server, image_uuid: image }, { uuid }));
    t.strictSame(again, out, 'idempotent');
});

t.test('a new uuid replaces every instance of the service on that server, carrying metadata and manifests', async (t) => {
    const { ctx, agent, otherAgent } = await world(t);
    const m1 = await aManifest(ctx);
    const m2 = await aManifest(ctx);
    const server = randomUUID();
    const otherServer = randomUUID();
    const old1 = await legacy(
        ctx,
        agentInst(agent, { server_uuid: server, image_uuid: randomUUID(), a: 1 }, { metadata: { ONE: 1, SHARED: 'old1' }, manifests: { one: m1.uuid } }),
    );
    const old2 = await legacy(ctx, agentInst(agent, { server_uuid: server, b: 2 }, { metadata: { TWO: 2 }, manifests: { two: m2.uuid } }));
    const elsewhere = await legacy(ctx, agentInst(agent, { server_uuid: otherServer }));
    const sibling = await legacy(ctx, agentInst(otherAgent, { server_uuid: server }));
    const unplaced = await legacy(ctx, agentInst(agent, {}));

    const image = randomUUID();
    const fresh = agentInst(agent, { server_uuid: server, image_uuid: image }, { metadata: { SHARED: 'new' } });
    const out = await adoptAgent(ctx, fresh);
    t.equal(out.uuid, fresh.uuid);
    t.strictSame(out.metadata, { ONE: 1, SHARED: 'new', TWO: 2 }, "the replaced instances' metadata, the new one's own winning");
    t.strictSame(out.manifests, { one: m1.uuid, two: m2.uuid });
    t.strictSame(out.params, { server_uuid: server, image_uuid: image, a: 1, b: 2 }, 'params too, the new ones winning');

    t.strictSame(await onServer(ctx, agent, server), [fresh.uuid], 'exactly one instance of the service on the server');
    const left = (await all(ctx)).map((i) => i.uuid);
    t.notOk(left.includes(old1.uuid) || left.includes(old2.uuid), 'the old instances are gone');
    t.ok(left.includes(elsewhere.uuid), 'another server keeps its instance');
    t.ok(left.includes(sibling.uuid), 'another service on the server keeps its instance');
    t.ok(left.includes(unplaced.uuid), 'an unplaced instance of the service is not replaced');
    t.equal(left.length, 4);
});

t.test('without params.server_uuid the agent is recorded unplaced and replaces nothing', async (t) => {
    const { ctx, agent } = await world(t);
    const server = randomUUID();
    const placed = await adoptAgent(ctx, agentInst(agent, { server_uuid: server }, { metadata: { PLACED: true } }));

    const old = agentInst(agent, undefined);
    const out = await adoptAgent(ctx, old);
    t.strictSame(out, { uuid: old.uuid, service_uuid: agent.uuid, params: {}, type: 'agent' }, 'no server_uuid, no index copy, nothing carried');
    t.strictSame(await onServer(ctx, agent, server), [placed.uuid], 'the placed instance stays');

    const image = randomUUID();
    const again = await adoptAgent(ctx, agentInst(agent, { image_uuid: image }, { uuid: old.uuid }));
    t.strictSame(again.params, { image_uuid: image }, 'an upsert by uuid');
    t.equal((await all(ctx)).length, 2);

    const later = await adoptAgent(ctx, agentInst(agent, { server_uuid: server }, { uuid: old.uuid }));
    t.strictSame(later.params, { image_uuid: image, server_uuid: server }, 'placed once it says its server');
    t.strictSame(later.metadata, { PLACED: true }, "and then it replaces the server's instance");
    t.strictSame(await onServer(ctx, agent, server), [old.uuid]);
    t.equal((await all(ctx)).length, 1);
});

t.test("a uuid held by a vm instance or another service's agent is 409, nothing written", async (t) => {
    const { ctx, agent, otherAgent, vm } = await world(t);
    const server = randomUUID();
    const vmInst = (await createInstance(ctx, reqInfo(), { service_uuid: vm.uuid, params: { server_uuid: server } })).instance;
    const other = await adoptAgent(ctx, agentInst(otherAgent, { server_uuid: server }));
    const mine = await adoptAgent(ctx, agentInst(agent, { server_uuid: server }));
    const before = await all(ctx);

    for (const taken of [vmInst.uuid, other.uuid]) {
        isSapiError(
            t,
            await rejection(adoptAgent(ctx, agentInst(agent, { server_uuid: server }, { uuid: taken }))),
            409,
            'InvalidArgument',
            `instance already exists: ${taken}`,
        );
    }
    t.strictSame(await all(ctx), before, 'nothing replaced');
    t.strictSame(await onServer(ctx, agent, server), [mine.uuid]);
});

t.test('a sibling changed between the read and the write: retried, its latest metadata carried over', async (t) => {
    const { ctx, agent } = await world(t);
    const server = randomUUID();
    const old = await adoptAgent(ctx, agentInst(agent, { server_uuid: server }, { metadata: { V: 1 } }));
    let raced = false;
    const racy: Store = Object.assign(Object.create(ctx.store) as Store, {
        batch: async (ops: BatchOp[]): Promise<void> => {
            if (!raced) {
                raced = true;
                await ctx.store.put(BUCKET_OF.instance, { ...old, metadata: { V: 2 } });
            }
            return ctx.store.batch(ops);
        },
    });
    const out = await adoptAgent({ ...ctx, store: racy }, agentInst(agent, { server_uuid: server }));
    t.ok(raced);
    t.strictSame(out.metadata, { V: 2 });
    t.strictSame(await onServer(ctx, agent, server), [out.uuid]);
});

t.test('two new uuids adopted at once on one server leave one instance', async (t) => {
    const { ctx, agent } = await world(t);
    const server = randomUUID();
    await Promise.allSettled([adoptAgent(ctx, agentInst(agent, { server_uuid: server })), adoptAgent(ctx, agentInst(agent, { server_uuid: server }))]);
    t.equal((await onServer(ctx, agent, server)).length, 1);
});

t.test('createInstance records agents through adoption where it only records', async (t) => {
    for (const [mode, v2] of [
        ['proto', true],
        ['proto', false],
        ['full', false],
    ] as const) {
        const { ctx, agent } = await world(t, { mode });
        const server = randomUUID();
        await adoptAgent(ctx, agentInst(agent, { server_uuid: server }, { metadata: { KEEP: 1 } }));
        const uuid = randomUUID();
        const r = await createInstance(ctx, reqInfo(v2), { service_uuid: agent.uuid, uuid, params: { server_uuid: server } });
        t.equal(r.instance.uuid, uuid, `${mode} mode, v2 ${v2}`);
        t.strictSame(r.instance.metadata, { KEEP: 1 }, 'replacing and carrying over as adoptAgent does');
        t.strictSame(await onServer(ctx, agent, server), [uuid]);

        const unplaced = await createInstance(ctx, reqInfo(v2), { service_uuid: agent.uuid });
        t.notOk(unplaced.instance.server_uuid, 'no server: recorded unplaced');
        t.strictSame(await onServer(ctx, agent, server), [uuid]);
    }
});

t.test('full mode, v2: an agent is installed, not adopted: it needs its image, server and deployer', async (t) => {
    const { ctx, agent } = await world(t, { mode: 'full' });
    const v2 = reqInfo(true);
    isSapiError(
        t,
        await rejection(createInstance(ctx, v2, { service_uuid: agent.uuid, params: { server_uuid: randomUUID() } })),
        409,
        'MissingParameter',
        'missing required keys: params.image_uuid',
    );
    isSapiError(
        t,
        await rejection(createInstance(ctx, v2, { service_uuid: agent.uuid, params: { image_uuid: randomUUID() } })),
        409,
        'MissingParameter',
        'missing required keys: params.server_uuid',
    );
    isSapiError(
        t,
        await rejection(createInstance(ctx, v2, { service_uuid: agent.uuid, params: { image_uuid: randomUUID(), server_uuid: randomUUID() } })),
        501,
        'NoDeployer',
    );
    t.strictSame(await all(ctx), [], 'nothing recorded');
});

t.test("the deployers' record operations adopt the same way", async (t) => {
    const { ctx, agent } = await world(t);
    const records = instanceRecords(ctx);
    const server = randomUUID();
    const old = await records.adoptAgent(agentInst(agent, { server_uuid: server }, { metadata: { KEEP: 1 } }));
    const fresh = await records.adoptAgent(agentInst(agent, { server_uuid: server }));
    t.strictSame(fresh.metadata, { KEEP: 1 });
    t.strictSame(
        (await records.findOnServer(agent.uuid, server)).map((i) => i.uuid),
        [fresh.uuid],
    );
    t.equal(await records.get(old.uuid), null);
});
