// CnapiClient against the fake CNAPI: servers, agent tasks, task polling
// and the fake CN's SAPI self-adoption (the agent's postinstall POST /instances).

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import t from 'tap';

import { CnapiClient, type TaskError } from '../../lib/clients/cnapi.js';
import { DownstreamHttpError } from '../../lib/clients/http.js';
import { SapiError } from '../../lib/errors.js';
import { startFakeCnapi, type FakeCnapi, type FakeCnapiOptions } from '../lib/fake-cnapi.js';
import { startFakeImgapi } from '../lib/fake-imgapi.js';

const FAST = { intervalMs: 10, deadlineMs: 30_000 };

/** The part of a tap Test that setup() needs. */
interface HasTeardown {
    teardown(fn: () => unknown): void;
}

async function setup(t: HasTeardown, opts: FakeCnapiOptions = {}): Promise<{ cnapi: FakeCnapi; client: CnapiClient }> {
    const cnapi = await startFakeCnapi(opts);
    const client = new CnapiClient({ url: cnapi.url, timeoutMs: 2000 });
    t.teardown(async () => {
        client.close();
        await cnapi.close();
    });
    return { cnapi, client };
}

function rejection(p: Promise<unknown>): Promise<unknown> {
    return p.then(
        () => {
            throw new Error('expected a rejection');
        },
        (e: unknown) => e,
    );
}

void t.test('getServer, ping and listServers (extras, filters, auto-paging)', async (t) => {
    const { cnapi } = await setup(t);
    const client = new CnapiClient({ url: cnapi.url, pageSize: 2 });
    t.teardown(() => client.close());
    const s1 = cnapi.addServer({ hostname: 'cn1x' });
    const s2 = cnapi.addServer({ hostname: 'cn2x' });
    cnapi.addServer({ hostname: 'cn3x' });
    const s4 = cnapi.addServer({ hostname: 'cn4x' });
    cnapi.addServer({ hostname: 'cn5x', setup: false });

    const one = await client.getServer(s1.uuid);
    t.equal(one.hostname, 'cn1x');
    t.equal(one.status, 'running');
    t.equal(one.agents?.[0]?.name, 'cn-agent');
    t.ok(one.sysinfo);
    t.same(await client.ping(), { ready: true, services: { workflow: 'online', moray: 'online', amqp: 'online' }, version: '1.26.4' });

    cnapi.clearRequests();
    const all = await client.listServers();
    t.equal(all.length, 5);
    t.same(
        cnapi.requests.map((r) => [r.query['limit'], r.query['offset']]),
        [
            ['2', '0'],
            ['2', '2'],
            ['2', '4'],
        ],
        'pages until a short page',
    );
    t.notOk(
        all.some((s) => 'agents' in s),
        'no agents without extras',
    );
    t.notOk(
        all.some((s) => 'status' in s),
        'no status without extras',
    );

    const withAgents = await client.listServers({ extras: 'agents', setup: true });
    t.equal(withAgents.length, 4);
    t.ok(withAgents.every((s) => Array.isArray(s.agents) && s.status === 'running' && !('sysinfo' in s)));

    const picked = await client.listServers({ uuids: [s2.uuid, s4.uuid], extras: ['all'] });
    t.same(
        picked.map((s) => s.hostname),
        ['cn2x', 'cn4x'],
    );
    t.ok(picked[0]?.sysinfo && picked[0]?.vms);

    const page = await client.listServers({ limit: 1, offset: 1 });
    t.same(
        page.map((s) => s.hostname),
        ['cn2x'],
        'explicit limit/offset: one request, no paging',
    );

    // Long uuid lists are split so URLs stay short.
    cnapi.clearRequests();
    const many = [...Array.from({ length: 230 }, () => randomUUID()), s1.uuid];
    const found = await client.listServers({ uuids: many });
    t.same(
        found.map((s) => s.uuid),
        [s1.uuid],
    );
    t.equal(cnapi.requests.length, 3);
    t.same(await client.listServers({ uuids: [] }), []);

    // CNAPI's own validation.
    await t.rejects(client.http.get('/servers', { query: { bogus: 1 } }), {
        statusCode: 409,
        message: 'bogus is not an explicitly defined parameter',
    });
    await t.rejects(client.http.get('/servers', { query: { limit: 5000 } }), {
        statusCode: 400,
        restCode: 'InvalidParameters',
        message: 'Request parameters failed validation',
    });
});

void t.test('install-agent: task completes, server.agents updated from the IMGAPI manifest', async (t) => {
    const imgapi = await startFakeImgapi();
    t.teardown(() => imgapi.close());
    const { cnapi, client } = await setup(t, { imgapi });
    const server = cnapi.addServer();
    const v1 = imgapi.addImage({ name: 'cmon-agent', version: '1.20.0' });
    const v2 = imgapi.addImage({ name: 'cmon-agent', version: '1.21.0' });

    const { id } = await client.installAgent(server.uuid, v1.uuid, { reqId: 'r-1' });
    t.match(cnapi.state.tasks.get(id), { status: 'active', task: 'agent_install', server_uuid: server.uuid, req_id: 'r-1' });
    t.notOk(
        cnapi.agentsOf(server.uuid).some((a) => a.name === 'cmon-agent'),
        'not installed before the task ends',
    );
    const task = await client.pollTask(id, FAST);
    t.equal(task.status, 'complete');
    t.same(
        task.history?.map((h) => [h.name, h.event]),
        [['finish', {}]],
    );

    const installed = (await client.getServer(server.uuid)).agents?.find((a) => a.name === 'cmon-agent');
    t.match(installed, { name: 'cmon-agent', version: '1.20.0', image_uuid: v1.uuid, uuid: /^[0-9a-f-]{36}$/ });

    // Upgrade keeps the instance uuid (the uuid file stays on the CN).
    await client.pollTask((await client.installAgent(server.uuid, v2.uuid)).id, FAST);
    const upgraded = (await client.getServer(server.uuid)).agents?.find((a) => a.name === 'cmon-agent');
    t.match(upgraded, { version: '1.21.0', image_uuid: v2.uuid, uuid: installed?.uuid });

    // Uninstall removes it; a reinstall gets a new uuid.
    await client.pollTask((await client.uninstallAgents(server.uuid, ['cmon-agent'])).id, FAST);
    t.notOk(cnapi.agentsOf(server.uuid).some((a) => a.name === 'cmon-agent'));
    await client.pollTask((await client.installAgent(server.uuid, v2.uuid)).id, FAST);
    const again = cnapi.agentsOf(server.uuid).find((a) => a.name === 'cmon-agent');
    t.ok(again?.uuid && again.uuid !== installed?.uuid, 'new uuid after uninstall');

    // Unknown image: the task (not the route) fails, as cn-agent does.
    const bogus = randomUUID();
    const err = (await rejection(client.pollTask((await client.installAgent(server.uuid, bogus)).id, FAST))) as TaskError;
    t.match(err, {
        statusCode: 500,
        restCode: 'AgentTaskFailedError',
        message: `Task ${err.taskId} failed with error: AgentInstall error: Image not found at ${imgapi.url}/images/${bogus} (server ${server.uuid})`,
        serverUuid: server.uuid,
    });
});

void t.test('install with an images map and noUuidFile', async (t) => {
    const image = randomUUID();
    const { cnapi, client } = await setup(t, { images: { [image]: { name: 'vm-agent', version: '3.1.0' } }, noUuidFile: true });
    const server = cnapi.addServer({ agents: [] });
    await client.pollTask((await client.installAgent(server.uuid, image)).id, FAST);
    t.same(cnapi.agentsOf(server.uuid), [{ name: 'vm-agent', version: '3.1.0', image_uuid: image }], 'no uuid without a uuid file');
});

void t.test('task failure message and history shape (§1.8)', async (t) => {
    const { cnapi, client } = await setup(t);
    const server = cnapi.addServer();
    cnapi.failNextTask('AgentInstall error: sha1 does not match: (a vs b)');
    const { id } = await client.installAgent(server.uuid, randomUUID());
    const err = (await rejection(client.pollTask(id, FAST))) as TaskError;
    t.ok(err instanceof SapiError);
    t.equal(err.message, `Task ${id} failed with error: AgentInstall error: sha1 does not match: (a vs b) (server ${server.uuid})`);
    t.equal(err.taskId, id);
    t.equal(err.task?.status, 'failure');
    const record = await client.getTask(id);
    t.same(
        record.history?.map((h) => [h.name, h.event]),
        [
            ['error', { error: { message: 'AgentInstall error: sha1 does not match: (a vs b)' } }],
            ['finish', {}],
        ],
    );
    t.match(record.history?.[0]?.timestamp, /^\d{4}-\d\d-\d\dT/);
});

void t.test('a hung task times out with TaskTimeoutError naming task, server and seconds', async (t) => {
    const { cnapi, client } = await setup(t);
    const server = cnapi.addServer();
    cnapi.hangNextTask();
    const { id } = await client.installAgent(server.uuid, randomUUID());
    const started = Date.now();
    const err = await rejection(client.pollTask(id, { intervalMs: 20, deadlineMs: 300 }));
    t.match(err, {
        statusCode: 504,
        restCode: 'TaskTimeoutError',
        message: `CNAPI task ${id} on server ${server.uuid} timed out after 0.3s (status: active)`,
    });
    // Not before the deadline (how long after it depends on the machine's load).
    const took = Date.now() - started;
    t.ok(took >= 290, `waited the deadline (${took} ms)`);
});

void t.test('a task that is never written: 404 forever fails after the grace period', async (t) => {
    const { cnapi, client } = await setup(t);
    const server = cnapi.addServer();
    cnapi.dropNextTask();
    const { id } = await client.installAgent(server.uuid, randomUUID());
    await t.rejects(client.getTask(id), { statusCode: 404, message: 'no such task found' });
    const err = await rejection(client.pollTask(id, { intervalMs: 20, deadlineMs: 5000, notFoundGraceMs: 150, server: server.uuid }));
    t.match(err, {
        statusCode: 500,
        restCode: 'AgentTaskFailedError',
        message: `CNAPI task ${id} on server ${server.uuid} was not found for 0.15s (the task record was never written)`,
        taskId: id,
    });
});

void t.test('transient errors while polling: tolerated up to maxConsecutiveErrors', async (t) => {
    const { cnapi, client } = await setup(t, { taskDurationMs: 100 });
    const server = cnapi.addServer();
    const image = randomUUID();
    cnapi.state.images.set(image, { name: 'net-agent' });

    // 5 errors in a row are fine.
    for (let i = 0; i < 5; i++) cnapi.failNext('GET /tasks/:id', 500);
    const ok = await client.pollTask((await client.installAgent(server.uuid, image)).id, { intervalMs: 5, deadlineMs: 30_000 });
    t.equal(ok.status, 'complete');

    // The 6th gives up, with the last error's status.
    for (let i = 0; i < 6; i++) cnapi.failNext('GET /tasks/:id', 500, { code: 'InternalError', message: 'error fetching task from moray' });
    const { id } = await client.installAgent(server.uuid, image);
    const err = await rejection(client.pollTask(id, { intervalMs: 5, deadlineMs: 30_000 }));
    t.match(err, {
        statusCode: 502,
        restCode: 'DownstreamError',
        message: `CNAPI task ${id} on server unknown: giving up after 6 consecutive errors: CNAPI error 500: error fetching task from moray`,
    });

    // CNAPI briefly down while polling: 503s are tolerated too. (The error
    // budget is ample: how many polls fail while it is down depends on the
    // machine's speed.)
    const second = await client.installAgent(server.uuid, image);
    const polling = client.pollTask(second.id, { intervalMs: 20, deadlineMs: 30_000, server: server.uuid, maxConsecutiveErrors: 1000 });
    await cnapi.down();
    await new Promise((r) => setTimeout(r, 60));
    await cnapi.up();
    t.equal((await polling).status, 'complete');

    // Down for good: 503 after the tolerated errors.
    const third = await client.installAgent(server.uuid, image);
    await cnapi.down();
    await t.rejects(client.pollTask(third.id, { intervalMs: 5, deadlineMs: 30_000, server: server.uuid, maxConsecutiveErrors: 2 }), {
        statusCode: 503,
        message: new RegExp(`^CNAPI task ${third.id} on server ${server.uuid}: giving up after 3 consecutive errors: CNAPI unavailable`),
    });
});

void t.test('route errors: unknown server 404, not running 409, old cn-agent 412', async (t) => {
    const { cnapi, client } = await setup(t);
    const missing = randomUUID();
    const err = await rejection(client.installAgent(missing, randomUUID()));
    t.ok(err instanceof DownstreamHttpError);
    t.match(err, { statusCode: 404, message: `Server ${missing} not found`, downstream: { status: 404 } });

    const down = cnapi.addServer({ status: 'unknown' });
    await t.rejects(client.installAgent(down.uuid, randomUUID()), {
        statusCode: 409,
        restCode: 'ServerNotRunning',
        message: 'Operation attempted on server which is not running',
    });
    await t.rejects(client.uninstallAgents(down.uuid, ['vm-agent']), {
        statusCode: 409,
        restCode: 'ServerNotRunning',
        message: /not running/,
    });

    const old = cnapi.addServer({ agents: [{ name: 'cn-agent', version: '2.7.9', image_uuid: randomUUID() }] });
    await t.rejects(client.uninstallAgents(old.uuid, ['vm-agent']), {
        statusCode: 412,
        restCode: 'PreconditionFailed',
        message: `cn-agent (v2.7.9) on server ${old.uuid} does not support "agents_uninstall": require at least cn-agent v2.8.0`,
        downstream: { status: 412, code: 'PreconditionFailed' },
    });
    t.equal(cnapi.state.taskLog.length, 0, 'no task was sent');

    const ok = cnapi.addServer();
    await t.rejects(client.http.post(`/servers/${ok.uuid}/uninstall-agents`, { body: { agents: 'vm-agent' } }), {
        statusCode: 502,
        message: 'CNAPI error 500: Request parameters failed validation',
        downstream: { status: 500, code: 'InvalidParameters' },
    });
});

void t.test('refresh-agents: null when CNAPI has no such route, else a task', async (t) => {
    const { cnapi, client } = await setup(t, { refreshAgents: false });
    const server = cnapi.addServer();
    t.equal(await client.refreshAgents(server.uuid), null);
    t.equal(cnapi.requests.at(-1)?.path, `/servers/${server.uuid}/refresh-agents`);

    cnapi.refreshAgentsEnabled = true;
    // Drift: the CN has an agent CNAPI does not know of yet.
    const image = randomUUID();
    cnapi.setNodeAgents(server.uuid, [...cnapi.agentsOf(server.uuid), { name: 'smartlogin', version: '2.2.0', image_uuid: image }]);
    t.notOk(cnapi.agentsOf(server.uuid).some((a) => a.name === 'smartlogin'));
    const res = await client.refreshAgents(server.uuid);
    t.ok(res?.id);
    const task = await client.pollTask(res?.id ?? '', FAST);
    t.equal(task.task, 'refresh_agents');
    t.match(
        cnapi.agentsOf(server.uuid).find((a) => a.name === 'smartlogin'),
        { image_uuid: image },
    );

    // An unknown server is still an error, not "unsupported".
    await t.rejects(client.refreshAgents(randomUUID()), { statusCode: 404, message: /^Server .* not found$/ });
});

void t.test('cn-agent self-update: the task completes before server.agents changes', async (t) => {
    const image = randomUUID();
    const { cnapi, client } = await setup(t, { images: { [image]: { name: 'cn-agent', version: '2.14.0' } }, cnAgentUpdateDelayMs: 150 });
    const server = cnapi.addServer();
    const before = cnapi.agentsOf(server.uuid).find((a) => a.name === 'cn-agent');

    const { id } = await client.installAgent(server.uuid, image);
    t.equal((await client.pollTask(id, FAST)).status, 'complete');
    t.equal(
        (await client.getServer(server.uuid)).agents?.find((a) => a.name === 'cn-agent')?.image_uuid,
        before?.image_uuid,
        'still the old cn-agent right after the task',
    );
    const agent = await client.waitForAgentImage(server.uuid, 'cn-agent', image, { intervalMs: 20, deadlineMs: 30_000 });
    t.same(agent, { name: 'cn-agent', version: '2.14.0', image_uuid: image, uuid: before?.uuid });

    await t.rejects(client.waitForAgentImage(server.uuid, 'cn-agent', randomUUID(), { intervalMs: 20, deadlineMs: 100 }), {
        statusCode: 504,
        restCode: 'TaskTimeoutError',
        message: /^cn-agent on server .* did not reach image .* within 0\.1s \(server\.agents has /,
    });
});

void t.test('agent tasks run one at a time per server, in parallel across servers', async (t) => {
    const image = randomUUID();
    const { cnapi, client } = await setup(t, { images: { [image]: { name: 'amon-agent' } }, taskDurationMs: 120 });
    const a = cnapi.addServer();
    const b = cnapi.addServer();

    const started = Date.now();
    const t1 = await client.installAgent(a.uuid, image);
    const t2 = await client.installAgent(a.uuid, image);
    const t3 = await client.installAgent(b.uuid, image);
    const done = (id: string): Promise<number> => client.pollTask(id, { intervalMs: 5, deadlineMs: 30_000 }).then(() => Date.now() - started);
    const [d1, d2] = await Promise.all([done(t1.id), done(t2.id), done(t3.id)]);
    // Lower bounds only: a task cannot end before its duration has passed.
    t.ok((d1 ?? 0) >= 110, `first task takes one duration (${d1})`);
    t.ok((d2 ?? 0) >= 230, `second task on the same server waited for the first (${d2})`);
    const second = cnapi.state.tasks.get(t2.id);
    const first = cnapi.state.tasks.get(t1.id);
    t.ok(
        Date.parse(second?.history?.[0]?.timestamp ?? '') - Date.parse(first?.history?.[0]?.timestamp ?? '') >= 110,
        'the second finished a full duration after the first',
    );
    t.match(cnapi.state.tasks.get(t2.id), { status: 'complete' });
    await cnapi.idle();

    // A server whose task never ends holds up its own queue only.
    cnapi.planTaskOn(a.uuid, 'hang');
    const stuck = await client.installAgent(a.uuid, image);
    const queued = await client.installAgent(a.uuid, image);
    const other = await client.installAgent(b.uuid, image);
    t.match(await client.pollTask(other.id, { intervalMs: 5, deadlineMs: 30_000 }), { status: 'complete' }, 'a task on another server did not wait');
    t.match(cnapi.state.tasks.get(stuck.id), { status: 'active' });
    t.match(cnapi.state.tasks.get(queued.id), { status: 'active' }, 'the one behind the stuck task still waits');
});

void t.test('execute (teardown hook), delete and factory-reset routes', async (t) => {
    const { cnapi, client } = await setup(t, { execute: (_s, body) => `ran: ${body.script ?? ''}` });
    const server = cnapi.addServer();
    const out = await client.execute(server.uuid, '/usr/sbin/zlogin abc "/opt/hook"');
    t.equal(out, 'ran: /usr/sbin/zlogin abc "/opt/hook"');
    t.same(cnapi.state.executions, [{ server_uuid: server.uuid, script: '/usr/sbin/zlogin abc "/opt/hook"' }]);

    const reset = await client.http.put<{ job_uuid: string }>(`/servers/${server.uuid}/factory-reset`, { body: {} });
    t.equal(reset.status, 202);
    t.ok(reset.body.job_uuid);
    await t.rejects(client.http.put(`/servers/${server.uuid}/factory-reset`, { body: { bogus: 1 } }), {
        statusCode: 409,
        message: 'bogus is not an explicitly defined parameter',
    });

    const del = await client.http.del(`/servers/${server.uuid}`);
    t.equal(del.status, 200);
    t.equal(del.body, undefined);
    await t.rejects(client.getServer(server.uuid), { statusCode: 404, message: /not found/ });

    // ServerUpdate is what cn-agent calls with its agents.
    const other = cnapi.addServer();
    const agents = [{ name: 'cn-agent', version: '2.15.0', image_uuid: randomUUID(), uuid: randomUUID() }];
    const upd = await client.http.post(`/servers/${other.uuid}`, { body: { agents } });
    t.equal(upd.status, 204);
    t.same((await client.getServer(other.uuid)).agents, agents);
});

// ---- self-adoption against a stub SAPI

interface StubSapi {
    url: string;
    requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: unknown }[];
    failPosts: number;
    services: { uuid: string; name: string }[];
    close(): Promise<void>;
}

async function startStubSapi(): Promise<StubSapi> {
    const stub: StubSapi = {
        url: '',
        requests: [],
        failPosts: 0,
        services: [],
        close: () => Promise.resolve(),
    };
    const srv = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const body: unknown = text ? JSON.parse(text) : undefined;
            stub.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
            const u = new URL(req.url ?? '/', 'http://x');
            res.setHeader('content-type', 'application/json');
            if (req.method === 'GET' && u.pathname === '/services') {
                const name = u.searchParams.get('name');
                res.end(JSON.stringify(stub.services.filter((s) => s.name === name)));
            } else if (req.method === 'POST' && u.pathname === '/instances') {
                const svc = (body as { service_uuid?: string }).service_uuid;
                if (stub.failPosts > 0 || !stub.services.some((s) => s.uuid === svc)) {
                    stub.failPosts = Math.max(0, stub.failPosts - 1);
                    res.statusCode = 500;
                    res.end(JSON.stringify({ code: 'InternalError', message: 'nope' }));
                } else {
                    res.end(JSON.stringify({ ...(body as object), type: 'agent' }));
                }
            } else {
                res.statusCode = 404;
                res.end(JSON.stringify({ code: 'ResourceNotFound', message: `${u.pathname} does not exist` }));
            }
        });
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    stub.url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    stub.close = () =>
        new Promise<void>((resolve) => {
            srv.closeAllConnections();
            srv.close(() => resolve());
        });
    return stub;
}

void t.test('self-adoption during install: GET /services then POST /instances, retried', async (t) => {
    const sapi = await startStubSapi();
    t.teardown(() => sapi.close());
    const svc = { uuid: randomUUID(), name: 'cmon-agent' };
    sapi.services.push(svc);
    sapi.failPosts = 2;
    const image = randomUUID();
    const { cnapi, client } = await setup(t, {
        images: { [image]: { name: 'cmon-agent', version: '1.0.0' } },
        sapiUrl: sapi.url,
        adoptDuringInstall: true,
        adoptIntervalMs: 10,
    });
    const server = cnapi.addServer();

    const { id } = await client.installAgent(server.uuid, image);
    await client.pollTask(id, FAST);
    const agent = cnapi.agentsOf(server.uuid).find((a) => a.name === 'cmon-agent');
    t.ok(agent?.uuid);

    t.same(
        sapi.requests.map((r) => `${r.method} ${r.url}`),
        [
            'GET /services?type=agent&name=cmon-agent',
            'POST /instances',
            'GET /services?type=agent&name=cmon-agent',
            'POST /instances',
            'GET /services?type=agent&name=cmon-agent',
            'POST /instances',
        ],
        'three tries, the third succeeds',
    );
    for (const r of sapi.requests) {
        t.equal(r.headers['accept'], 'application/json');
        t.notOk('accept-version' in r.headers, 'no Accept-Version (the v1 view)');
    }
    t.same(sapi.requests.at(-1)?.body, {
        service_uuid: svc.uuid,
        uuid: agent?.uuid,
        params: { server_uuid: server.uuid, image_uuid: image },
    });
    t.same(
        cnapi.state.adoptions.map((a) => [a.attempt, a.ok]),
        [
            [1, false],
            [2, false],
            [3, true],
        ],
    );
});

void t.test('self-adoption failing every try fails the install and leaves server.agents alone', async (t) => {
    const sapi = await startStubSapi();
    t.teardown(() => sapi.close());
    // No such service in SAPI: `json -Ha uuid` yields "", every POST fails.
    const image = randomUUID();
    const { cnapi, client } = await setup(t, {
        images: { [image]: { name: 'firewaller', version: '1.0.0' } },
        sapiUrl: sapi.url,
        adoptDuringInstall: true,
        adoptIntervalMs: 5,
    });
    const server = cnapi.addServer();
    const before = cnapi.agentsOf(server.uuid);

    const { id } = await client.installAgent(server.uuid, image);
    const err = (await rejection(client.pollTask(id, FAST))) as TaskError;
    t.match(
        err.message,
        new RegExp(
            `^Task ${id} failed with error: AgentInstall error: postinstall of firewaller failed: could not adopt instance \\S+ into SAPI after 10 tries \\(server ${server.uuid}\\)$`,
        ),
    );
    t.equal(cnapi.state.adoptions.length, 10);
    t.equal(sapi.requests.filter((r) => r.method === 'POST').length, 10);
    t.same(sapi.requests.find((r) => r.method === 'POST')?.body, {
        service_uuid: '',
        uuid: cnapi.state.adoptions[0]?.uuid,
        params: { server_uuid: server.uuid, image_uuid: image },
    });
    t.same(cnapi.agentsOf(server.uuid), before);
});
