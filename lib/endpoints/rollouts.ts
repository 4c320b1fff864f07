// Rollouts (new in SAPI-TS): upgrade an agent service's instances to an
// image, many servers at a time, with progress readable while it runs.

import type { Server } from 'restify';

import { invalidArgument, missingKeys } from '../errors.js';
import { isUuid } from '../model/validate.js';
import type { RolloutManager, StartRollout } from '../rollout/runner.js';
import { mount, paramsOf } from './common.js';

function list(v: unknown, field: string): string[] | undefined {
    if (v === undefined || v === '') {
        return undefined;
    }
    const out = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : null;
    if (!out || !out.every((x) => typeof x === 'string')) {
        throw invalidArgument(`${field} must be a list of UUIDs`);
    }
    return (out).map((x) => x.trim()).filter(Boolean);
}

function int(v: unknown, field: string): number | undefined {
    if (v === undefined || v === '') {
        return undefined;
    }
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
    if (!Number.isFinite(n) || n <= 0) {
        throw invalidArgument(`${field} must be a positive number`);
    }
    return n;
}

export function mountRollouts(server: Server, rollouts: RolloutManager): void {
    mount(server, { method: 'post', path: '/rollouts', name: 'CreateRollout' }, async (req, res, info) => {
        const p = paramsOf(req);
        const missing = ['service_uuid', 'image_uuid'].filter((k) => p[k] === undefined || p[k] === '');
        if (missing.length > 0) {
            throw missingKeys(missing);
        }
        for (const k of ['service_uuid', 'image_uuid']) {
            if (!isUuid(p[k])) {
                throw invalidArgument(`${k} must be a UUID`);
            }
        }
        const input: StartRollout = { service_uuid: p.service_uuid as string, image_uuid: p.image_uuid as string };
        const concurrency = int(p.concurrency, 'concurrency');
        if (concurrency !== undefined) input.concurrency = concurrency;
        const servers = list(p.servers, 'servers');
        if (servers) input.servers = servers;
        const instances = list(p.instances, 'instances');
        if (instances) input.instances = instances;
        const stall = int(p.stall_factor, 'stall_factor');
        if (stall !== undefined) input.stall_factor = stall;
        const minFinished = int(p.stall_min_finished, 'stall_min_finished');
        if (minFinished !== undefined) input.stall_min_finished = minFinished;
        const timeout = int(p.instance_timeout_ms, 'instance_timeout_ms');
        if (timeout !== undefined) input.instance_timeout_ms = timeout;
        res.send(200, await rollouts.start(input, info.reqId));
    });
    mount(server, { method: 'get', path: '/rollouts', name: 'ListRollouts' }, async (req, res) => {
        const svc = paramsOf(req).service_uuid;
        if (svc !== undefined && svc !== '' && !isUuid(svc)) {
            throw invalidArgument('service_uuid must be a UUID');
        }
        res.send(200, await rollouts.list(typeof svc === 'string' && svc ? svc : undefined));
    });
    mount(server, { method: 'get', path: '/rollouts/:uuid', name: 'GetRollout' }, async (req, res) => {
        res.send(200, await rollouts.get(String(req.params.uuid)));
    });
    mount(server, { method: 'del', path: '/rollouts/:uuid', name: 'CancelRollout' }, async (req, res) => {
        res.send(200, await rollouts.cancel(String(req.params.uuid)));
    });
}
