// Full mode, vm instances: the `teardown-hook` param runs in the zone
// through CNAPI's execute before the VM is destroyed.

import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { startVmEnv, type VmEnv } from '../lib/vm-env.js';

const HOOK = '/opt/smartdc/manatee/bin/manatee-teardown --now';

async function anInstance(env: VmEnv, params: Record<string, unknown> = {}): Promise<{ uuid: string; before: unknown }> {
    const r = await env.create({ params });
    if (r.status !== 200) {
        throw new Error(`create: ${r.status} ${r.text}`);
    }
    env.vmapi.clearRequests();
    return { uuid: r.body.uuid, before: r.body };
}

void t.test("delete with a teardown-hook: the exact CNAPI execute on the VM's server, then deleteVm", async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': HOOK } });
    const { uuid } = await anInstance(env);
    let deletesWhenHookRan = -1;
    env.cnapi.executeHandler = () => {
        deletesWhenHookRan = env.vmapi.requestsTo('DELETE /vms/:uuid').length;
        return 'torn down\n';
    };
    const r = await env.h.call('DELETE', `/instances/${uuid}`, { headers: { 'x-request-id': 'hook-1' } });
    t.equal(r.status, 204);

    const execs = env.cnapi.requestsTo('POST /servers/:uuid/execute');
    t.equal(execs.length, 1, 'one execute');
    t.equal(execs[0]?.url, `/servers/${env.server}/execute`, 'on the server VMAPI reports, no query');
    t.equal(JSON.stringify(execs[0]?.body), `{"script":"/usr/sbin/zlogin ${uuid} \\"${HOOK}\\""}`, 'the JSON body');
    t.match(execs[0]?.headers['content-type'], /^application\/json/);
    t.strictSame(execs[0]?.body, { script: `/usr/sbin/zlogin ${uuid} "${HOOK}"` }, 'exactly {script}, no json flag');
    t.equal(execs[0]?.headers['x-request-id'], 'hook-1');
    t.equal(deletesWhenHookRan, 0, 'the hook ran before deleteVm');
    t.same(
        env.vmapi.requests.filter((q) => q.routeKey !== 'GET /jobs/:uuid').map((q) => `${q.method} ${q.path}`),
        [`GET /vms/${uuid}`, `DELETE /vms/${uuid}`],
        'VM looked up for its server, then destroyed',
    );
    t.equal(env.vmapi.state.vms.get(uuid)?.state, 'destroyed');
    t.equal(await env.record(uuid), null);
});

void t.test("the hook may come from the instance params (merged), and uses the VM's current server", async (t) => {
    const env = await startVmEnv(t);
    const { uuid } = await anInstance(env, { 'teardown-hook': 'svcadm disable registrar' });
    const moved = env.cnapi.addServer().uuid;
    const vm = env.vmapi.state.vms.get(uuid);
    if (vm) vm.server_uuid = moved;
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    t.equal(r.status, 204);
    t.strictSame(env.cnapi.state.executions, [{ server_uuid: moved, script: `/usr/sbin/zlogin ${uuid} "svcadm disable registrar"` }]);
});

void t.test('the hook fails: 500 TeardownHookError, VM not destroyed, record kept', async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': HOOK } });
    const { uuid, before } = await anInstance(env);
    env.cnapi.failNext('POST /servers/:uuid/execute', 500, { code: 'InternalError', message: 'exit status 1' });
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r, 500, 'TeardownHookError', `teardown-hook of instance ${uuid} failed on server ${env.server}: CNAPI error 500: exit status 1`);
    t.equal(env.vmapi.requestsTo('DELETE /vms/:uuid').length, 0, 'deleteVm not called');
    t.equal(env.vmapi.state.vms.get(uuid)?.state, 'running');
    t.same(await env.record(uuid), before);

    // CNAPI does not know the server: also the hook's failure.
    env.cnapi.state.servers.delete(env.server);
    const r2 = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r2, 500, 'TeardownHookError', `teardown-hook of instance ${uuid} failed on server ${env.server}: Server ${env.server} not found`);
    t.same(await env.record(uuid), before);
});

void t.test('CNAPI down: 503 DownstreamError naming CNAPI, record kept', async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': HOOK } });
    const { uuid, before } = await anInstance(env);
    await env.cnapi.down();
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r, 503, 'DownstreamError', new RegExp(`^running the teardown-hook of instance ${uuid} on server ${env.server}: CNAPI unavailable: `));
    t.equal(env.vmapi.requestsTo('DELETE /vms/:uuid').length, 0);
    t.same(await env.record(uuid), before);
});

void t.test('no such VM in VMAPI: 409 no such zone, nothing run, record kept', async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': HOOK } });
    const { uuid, before } = await anInstance(env);
    env.vmapi.state.vms.delete(uuid);
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r, 409, 'InvalidArgument', `no such zone: ${uuid}`);
    t.equal(env.cnapi.requests.length, 0);
    t.equal(env.vmapi.requestsTo('DELETE /vms/:uuid').length, 0);
    t.same(await env.record(uuid), before);

    // Removing the hook from the service lets the delete through (VM gone = fine).
    const svcUpd = await env.h.call('PUT', `/services/${env.svc.uuid}`, {
        body: { action: 'delete', params: { 'teardown-hook': null } },
    });
    t.equal(svcUpd.status, 200);
    t.equal((await env.h.call('DELETE', `/instances/${uuid}`)).status, 204);
    t.equal(await env.record(uuid), null);
});

void t.test('no CNAPI configured: 500 TeardownHookError saying so, record kept', async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': HOOK }, without: ['cnapi'] });
    const { uuid, before } = await anInstance(env);
    const r = await env.h.call('DELETE', `/instances/${uuid}`);
    isError(t, r, 500, 'TeardownHookError', `teardown-hook of instance ${uuid} cannot run: no CNAPI is configured (cnapi.url)`);
    t.same(await env.record(uuid), before);
});

void t.test('an empty teardown-hook is no hook', async (t) => {
    const env = await startVmEnv(t, { svcParams: { 'teardown-hook': '' } });
    const { uuid } = await anInstance(env);
    t.equal((await env.h.call('DELETE', `/instances/${uuid}`)).status, 204);
    t.equal(env.cnapi.requests.length, 0);
});
