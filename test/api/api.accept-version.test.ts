// Accept-Version: absent = v1; ranges pick the v1 or v2 view; unsupported ranges are 400 InvalidVersion.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { anAgentService, anApplication, aService } from '../lib/fixtures.js';
import { startSapi, type Harness } from '../lib/harness.js';

interface World {
    h: Harness;
    app: string;
    vmSvc: string;
    agentSvc: string;
    vmInst: string;
    agentInst: string;
}

async function world(): Promise<World> {
    const h = await startSapi();
    const app = await anApplication(h);
    const vmSvc = await aService(h, app.uuid, { name: 'imgapi' });
    const agentSvc = await anAgentService(h, app.uuid, 'vm-agent');
    const vmInst = (await h.call('POST', '/instances', { body: { service_uuid: vmSvc.uuid } })).body;
    const agentInst = (
        await h.call('POST', '/instances', {
            body: { service_uuid: agentSvc.uuid, uuid: randomUUID(), params: { server_uuid: randomUUID(), image_uuid: randomUUID() } },
        })
    ).body;
    return { h, app: app.uuid, vmSvc: vmSvc.uuid, agentSvc: agentSvc.uuid, vmInst: vmInst.uuid, agentInst: agentInst.uuid };
}

const uuids = (body: { uuid: string }[]): string[] => body.map((o) => o.uuid);

t.test('which ranges give which view', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    const v1Ranges = [undefined, '~1', '1.0.0', '1.x', '^1'];
    const v2Ranges = ['~2', '2.0.0', '^2', '>=1', '*', '2.x', '>=1.0.0 <3'];
    for (const version of v1Ranges) {
        const r = await w.h.call('GET', `/services/${w.vmSvc}`, version ? { version } : {});
        t.equal(r.status, 200);
        t.notOk('type' in r.body, `${version ?? '(absent)'} → v1 view, no type`);
    }
    for (const version of v2Ranges) {
        const r = await w.h.call('GET', `/services/${w.vmSvc}`, { version });
        t.equal(r.status, 200);
        t.equal(r.body.type, 'vm', `${version} → v2 view, type shown`);
    }
});

t.test('a range neither 1.0.0 nor 2.0.0 satisfies is 400 InvalidVersion naming method and path', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    isError(t, await w.h.call('GET', `/services/${w.vmSvc}`, { version: '~3' }), 400, 'InvalidVersion', `~3 is not supported by GET /services/${w.vmSvc}`);
    isError(
        t,
        await w.h.call('GET', `/services/${w.vmSvc}`, { version: 'banana' }),
        400,
        'InvalidVersion',
        `banana is not supported by GET /services/${w.vmSvc}`,
    );
    isError(t, await w.h.call('POST', '/applications', { version: '>=3', body: {} }), 400, 'InvalidVersion', '>=3 is not supported by POST /applications');
    isError(t, await w.h.call('GET', '/ping', { version: '~0' }), 400, 'InvalidVersion', '~0 is not supported by GET /ping');
});

t.test('v1 hides type on every service and instance body, agents included', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    const { h } = w;
    for (const path of [`/services/${w.agentSvc}`, `/instances/${w.agentInst}`, `/instances/${w.vmInst}`]) {
        const v1 = await h.call('GET', path);
        t.equal(v1.status, 200, `${path} is served to v1`);
        t.notOk('type' in v1.body, `${path}: no type in v1`);
        t.ok('type' in (await h.call('GET', path, { version: '~2' })).body, `${path}: type in v2`);
    }
    const upd = await h.call('PUT', `/services/${w.agentSvc}`, { body: { metadata: { a: 1 } } });
    t.notOk('type' in upd.body, 'update bodies follow the view');
    const created = await h.call('POST', '/services', { body: { name: 'x', application_uuid: w.app, type: 'agent' } });
    t.notOk('type' in created.body, 'create bodies follow the view');
    t.equal((await h.call('GET', `/services/${created.body.uuid}`, { version: '~2' })).body.type, 'agent', 'but the type is stored');
});

t.test('v1 ListServices sees only vm services unless a type is asked for', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    const { h } = w;
    t.strictSame(uuids((await h.call('GET', '/services')).body), [w.vmSvc]);
    t.strictSame(uuids((await h.call('GET', '/services?type=agent')).body), [w.agentSvc]);
    t.strictSame(uuids((await h.call('GET', '/services?name=vm-agent')).body), [], 'a name alone still gets type=vm');
    t.strictSame(uuids((await h.call('GET', '/services', { version: '~2' })).body), [w.vmSvc, w.agentSvc]);
    t.strictSame(uuids((await h.call('GET', '/services?type=agent', { version: '~2' })).body), [w.agentSvc]);
});

t.test('v1 ListInstances sees only vm instances unless service_uuid (any type) or type is given', async (t) => {
    const w = await world();
    t.teardown(w.h.close);
    const { h } = w;
    t.strictSame(uuids((await h.call('GET', '/instances')).body), [w.vmInst]);
    t.strictSame(uuids((await h.call('GET', '/instances?type=agent')).body), [w.agentInst]);
    t.strictSame(uuids((await h.call('GET', `/instances?service_uuid=${w.agentSvc}`)).body), [w.agentInst], 'service_uuid drops the type filter');
    t.strictSame(
        uuids((await h.call('GET', `/instances?service_uuid=${w.agentSvc}&type=vm`)).body),
        [w.agentInst],
        'type is ignored when service_uuid is given',
    );
    t.notOk('type' in (await h.call('GET', `/instances?service_uuid=${w.agentSvc}`)).body[0]);

    t.strictSame(uuids((await h.call('GET', '/instances', { version: '~2' })).body), [w.vmInst, w.agentInst]);
    t.strictSame(uuids((await h.call('GET', '/instances?type=agent', { version: '~2' })).body), [w.agentInst]);
    // Decision (issue 4: "any combination (AND)"): the v2 view ANDs type with
    // service_uuid; the v1 view keeps 2.1.2's rule (above).
    t.strictSame(uuids((await h.call('GET', `/instances?service_uuid=${w.agentSvc}&type=vm`, { version: '~2' })).body), [], 'v2: service_uuid AND type');
    t.strictSame(uuids((await h.call('GET', `/instances?service_uuid=${w.agentSvc}&type=agent`, { version: '~2' })).body), [w.agentInst]);
});
