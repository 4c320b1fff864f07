// A record-only agent create in full mode begins its adoption before its
// service and application are read (lib/model/adoption.ts beginAdoption):
// it still runs one after another with the other adoptions of its
// (service, server), and a create that turns out not to adopt lets the
// next one run.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { adoptAgent } from '../../lib/model/adoption.js';
import { createInstance } from '../../lib/model/instances.js';
import { BUCKET_OF } from '../../lib/model/objects.js';
import type { Instance } from '../../lib/model/types.js';
import { and, eq, type Store } from '../../lib/stor/store.js';
import { anAgentService, anApplication, aService, isSapiError, modelCtx, rejection, reqInfo } from '../lib/model-ctx.js';

async function onServer(store: Store, service: string, server: string): Promise<Instance[]> {
    return (await store.find<Instance>(BUCKET_OF.instance, and(eq('service_uuid', service), eq('server_uuid', server)))).items.map((s) => s.value);
}

t.test('concurrent v1 registrations of one (service, server) in full mode leave one instance, metadata carried', async (t) => {
    const ctx = await modelCtx(t, { mode: 'full' });
    const app = await anApplication(ctx);
    const agent = await anAgentService(ctx, app.uuid);
    const server = randomUUID();
    await adoptAgent(ctx, { uuid: randomUUID(), service_uuid: agent.uuid, type: 'agent', params: { server_uuid: server }, metadata: { KEEP: 1 } });
    const uuids = Array.from({ length: 6 }, () => randomUUID());
    const out = await Promise.all(
        uuids.map((uuid, i) =>
            createInstance(ctx, reqInfo(false), { uuid, service_uuid: agent.uuid, params: { server_uuid: server }, metadata: { [`N${i}`]: i } }),
        ),
    );
    const left = await onServer(ctx.store, agent.uuid, server);
    t.equal(left.length, 1, 'one instance on the server');
    t.equal(left[0]?.uuid, out[5]?.instance.uuid, 'the last registration, each having replaced the one before');
    t.strictSame(left[0]?.metadata, { KEEP: 1, N0: 0, N1: 1, N2: 2, N3: 3, N4: 4, N5: 5 }, 'everything carried over');
});

t.test('a registration without a uuid gets a new one and replaces the server instance', async (t) => {
    const ctx = await modelCtx(t, { mode: 'full' });
    const app = await anApplication(ctx);
    const agent = await anAgentService(ctx, app.uuid);
    const server = randomUUID();
    const old = await adoptAgent(ctx, { uuid: randomUUID(), service_uuid: agent.uuid, type: 'agent', params: { server_uuid: server } });
    const r = await createInstance(ctx, reqInfo(false), { service_uuid: agent.uuid, params: { server_uuid: server } });
    t.not(r.instance.uuid, old.uuid);
    t.strictSame(
        (await onServer(ctx.store, agent.uuid, server)).map((i) => i.uuid),
        [r.instance.uuid],
    );
});

t.test('a create that does not adopt lets the next adoption of its pair run', async (t) => {
    const ctx = await modelCtx(t, { mode: 'full' });
    const app = await anApplication(ctx);
    const agent = await anAgentService(ctx, app.uuid);
    const vm = await aService(ctx, app.uuid);
    const server = randomUUID();
    // A missing service, a vm service (no deployer here) and a uuid held by a vm: each fails, none adopts.
    isSapiError(
        t,
        await rejection(createInstance(ctx, reqInfo(false), { service_uuid: randomUUID(), params: { server_uuid: server } })),
        404,
        'ResourceNotFound',
    );
    isSapiError(t, await rejection(createInstance(ctx, reqInfo(false), { service_uuid: vm.uuid, params: { server_uuid: server } })), 409, 'MissingParameter');
    const held = randomUUID();
    await ctx.store.put(BUCKET_OF.instance, { uuid: held, service_uuid: vm.uuid, type: 'vm' });
    isSapiError(
        t,
        await rejection(createInstance(ctx, reqInfo(false), { uuid: held, service_uuid: agent.uuid, params: { server_uuid: server } })),
        409,
        'InvalidArgument',
        `instance already exists: ${held}`,
    );
    const r = await createInstance(ctx, reqInfo(false), { service_uuid: agent.uuid, params: { server_uuid: server } });
    t.strictSame(
        (await onServer(ctx.store, agent.uuid, server)).map((i) => i.uuid),
        [r.instance.uuid],
        'the adoption after them ran',
    );
});

t.test('an agent registering again from another server: its record is found and moved, not duplicated', async (t) => {
    const ctx = await modelCtx(t, { mode: 'full' });
    const app = await anApplication(ctx);
    const agent = await anAgentService(ctx, app.uuid);
    const [from, to] = [randomUUID(), randomUUID()];
    const uuid = randomUUID();
    await createInstance(ctx, reqInfo(false), { uuid, service_uuid: agent.uuid, params: { server_uuid: from }, metadata: { KEEP: 1 } });
    const r = await createInstance(ctx, reqInfo(false), { uuid, service_uuid: agent.uuid, params: { server_uuid: to } });
    t.equal(r.instance.uuid, uuid);
    t.strictSame(r.instance.metadata, { KEEP: 1 }, 'an upsert of the record it had');
    t.strictSame(await onServer(ctx.store, agent.uuid, from), [], 'nothing left on the old server');
    t.strictSame(
        (await onServer(ctx.store, agent.uuid, to)).map((i) => i.uuid),
        [uuid],
    );
});
