// The JSON client's error mapping against real (fake) servers: refused → 503,
// timeout → 504, downstream 5xx → 502, 4xx passed through with `downstream`.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

import t from 'tap';

import { SapiError } from '../../lib/errors.js';
import { CnapiClient } from '../../lib/clients/cnapi.js';
import { DownstreamHttpError, JsonClient, isTransientError, queryString } from '../../lib/clients/http.js';
import { startFakeCnapi } from '../lib/fake-cnapi.js';

void t.test('connection refused → 503 DownstreamError naming the service', async (t) => {
    const cnapi = await startFakeCnapi();
    const server = cnapi.addServer();
    const client = new CnapiClient({ url: cnapi.url, timeoutMs: 1000 });
    t.teardown(async () => {
        client.close();
        await cnapi.close();
    });

    // A kept-alive socket exists before the fake goes down.
    t.equal((await client.getServer(server.uuid)).uuid, server.uuid);
    await cnapi.down();
    const err = await client.getServer(server.uuid).then(
        () => null,
        (e: unknown) => e,
    );
    t.ok(err instanceof SapiError);
    t.match(err, { statusCode: 503, restCode: 'DownstreamError', message: /^CNAPI unavailable: .*ECONNREFUSED/ });
    t.ok(isTransientError(err));
    t.same((err as SapiError).toJSON().code, 'DownstreamError');

    // Back up on the same port: the client recovers (stale keep-alive sockets are retried).
    await cnapi.up();
    t.equal((await client.getServer(server.uuid)).uuid, server.uuid);
});

void t.test('downstream 5xx → 502 with their message, and the raw answer in `downstream`', async (t) => {
    const cnapi = await startFakeCnapi();
    const server = cnapi.addServer();
    const client = new CnapiClient({ url: cnapi.url });
    t.teardown(async () => {
        client.close();
        await cnapi.close();
    });

    cnapi.failNext('GET /servers/:uuid', 500, { code: 'InternalError', message: 'moray is sad' });
    const err = await client.getServer(server.uuid).catch((e: unknown) => e);
    t.ok(err instanceof DownstreamHttpError);
    t.match(err, {
        statusCode: 502,
        restCode: 'DownstreamError',
        message: 'CNAPI error 500: moray is sad',
        downstream: { service: 'CNAPI', status: 500, code: 'InternalError' },
    });

    // Moray down in CNAPI: its own 500 body passes through the same way.
    cnapi.state.moray = false;
    await t.rejects(client.getServer(server.uuid), {
        statusCode: 502,
        message: 'CNAPI error 500: Precondition failed: no connection moray',
    });
    cnapi.state.moray = true;

    // A 503 with a bare string body.
    cnapi.failNext('GET /servers/:uuid', 503, 'CN Agent is not accepting tasks for maintenance');
    await t.rejects(client.getServer(server.uuid), {
        statusCode: 502,
        message: 'CNAPI error 503: CN Agent is not accepting tasks for maintenance',
    });
});

void t.test('timeouts → 504 naming the method and path', async (t) => {
    const cnapi = await startFakeCnapi();
    const server = cnapi.addServer();
    const client = new CnapiClient({ url: cnapi.url, timeoutMs: 100 });
    t.teardown(async () => {
        client.close();
        await cnapi.close();
    });

    // The route never answers: the 504 naming 100ms is the client's timeout giving up.
    cnapi.hang('GET /servers/:uuid');
    await t.rejects(client.getServer(server.uuid), {
        statusCode: 504,
        restCode: 'DownstreamError',
        message: `CNAPI request timed out after 100ms: GET /servers/${server.uuid}`,
    });
    // Other routes still answer.
    t.equal((await client.ping()).version, '1.26.4');
    cnapi.unhang();

    cnapi.latencyMs = 300;
    await t.rejects(client.getTask('nope'), { statusCode: 504, message: /timed out after 100ms: GET \/tasks\/nope$/ });
    cnapi.latencyMs = 0;
    await t.rejects(client.getTask('nope'), { statusCode: 404, message: 'no such task found' });

    // hang() with no route hangs everything, including /ping.
    cnapi.hang();
    await t.rejects(client.ping(), { statusCode: 504, message: /GET \/ping$/ });
    cnapi.unhang();
    t.equal((await client.ping()).ready, true);
});

void t.test('4xx → SapiError with their status, code and message, plus `downstream`', async (t) => {
    const cnapi = await startFakeCnapi();
    const server = cnapi.addServer({ vms: { 'a1e0a5a8-7b4e-4e2c-a1c8-1b1b1b1b1b1b': {} } });
    const client = new CnapiClient({ url: cnapi.url });
    t.teardown(async () => {
        client.close();
        await cnapi.close();
    });

    const missing = '6f0c2d7e-8b5c-4c3a-9d2e-000000000000';
    const err = await client.getServer(missing).catch((e: unknown) => e);
    t.ok(err instanceof DownstreamHttpError);
    t.match(err, {
        statusCode: 404,
        restCode: 'ResourceNotFound',
        message: `Server ${missing} not found`,
        downstream: { service: 'CNAPI', status: 404, code: 'ResourceNotFound', body: { code: 'ResourceNotFound' } },
    });
    t.notOk(isTransientError(err));

    await t.rejects(client.getServer('not-a-uuid'), { statusCode: 409, restCode: 'InvalidArgument', message: 'Invalid server_uuid' });

    // CNAPI's factory-reset refusal is a bare JSON string: code defaults to InvalidArgument.
    await t.rejects(client.http.put(`/servers/${server.uuid}/factory-reset`), {
        statusCode: 409,
        restCode: 'InvalidArgument',
        message: 'Server may not be reset because it has 1 vms',
        downstream: { status: 409, code: undefined, body: 'Server may not be reset because it has 1 vms' },
    });

    // Unknown path and wrong method: restify-style answers.
    await t.rejects(client.http.get('/nope'), { statusCode: 404, message: '/nope does not exist' });
    await t.rejects(client.http.put('/ping'), { statusCode: 405, restCode: 'MethodNotAllowed', message: 'PUT is not allowed' });
});

void t.test('x-request-id, query strings, keep-alive', async (t) => {
    const cnapi = await startFakeCnapi();
    const server = cnapi.addServer();
    const client = new CnapiClient({ url: cnapi.url });
    t.teardown(async () => {
        client.close();
        await cnapi.close();
    });

    await client.getServer(server.uuid, { reqId: 'req-1234' });
    await client.listServers({ uuids: [server.uuid], extras: ['agents', 'sysinfo'], setup: true, reqId: 'req-5678' });
    const [get, list] = cnapi.requests;
    t.equal(get?.headers['x-request-id'], 'req-1234');
    t.equal(get?.headers['accept'], 'application/json');
    t.equal(list?.headers['x-request-id'], 'req-5678');
    t.same(list?.query, { uuids: server.uuid, setup: 'true', extras: 'agents,sysinfo', limit: '1000', offset: '0' });
    t.equal(get?.remotePort, list?.remotePort, 'one kept-alive connection');

    await client.installAgent(server.uuid, '5b1b4f3e-0000-4000-8000-000000000001');
    const post = cnapi.requests[2];
    t.equal(post?.headers['content-type'], 'application/json');
    t.same(post?.body, { image_uuid: '5b1b4f3e-0000-4000-8000-000000000001' });
    t.notOk(post?.headers['x-request-id'], 'no x-request-id unless given');

    // A 2xx without the field the call needs is a 502, not a crash later.
    cnapi.failNext('POST /servers/:uuid/install-agent', 200, {});
    await t.rejects(client.installAgent(server.uuid, '5b1b4f3e-0000-4000-8000-000000000001'), {
        statusCode: 502,
        message: `CNAPI answered POST /servers/${server.uuid}/install-agent without "id"`,
    });

    t.equal(queryString({ a: 'x y', b: undefined, c: null, d: false, e: 3 }), '?a=x+y&d=false&e=3');
    t.equal(queryString({}), '');
});

void t.test('invalid JSON from a downstream → 502; non-JSON text is returned as is', async (t) => {
    const srv = http.createServer((req, res) => {
        if (req.url === '/bad') {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end('{"not json');
        } else if (req.url === '/text') {
            res.writeHead(200, { 'content-type': 'text/plain' });
            res.end('hello');
        } else {
            res.writeHead(204);
            res.end();
        }
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const client = new JsonClient({ url, service: 'NAPI' });
    t.teardown(async () => {
        client.close();
        srv.closeAllConnections();
        await new Promise<void>((resolve) => srv.close(() => resolve()));
    });

    await t.rejects(client.get('/bad'), { statusCode: 502, message: /^NAPI sent invalid JSON for GET \/bad/ });
    const text = await client.get<string>('/text');
    t.equal(text.status, 200);
    t.equal(text.body, 'hello');
    const empty = await client.del('/x');
    t.equal(empty.status, 204);
    t.equal(empty.body, undefined);
});
