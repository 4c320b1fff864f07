// Rollouts (new in SAPI-TS): upgrade an agent service's instances to an
// image, or a plan of agent services, many servers at a time, with
// progress readable while it runs; promote, resume, revert and cancel.

import type { Server } from 'restify';

import { invalidArgument } from '../errors.js';
import { isUuid } from '../model/validate.js';
import { rolloutInput, type RolloutManager } from '../rollout/runner.js';
import { mount, paramsOf } from './common.js';

/** Query and form values are strings: lists may come comma-separated, numbers as text. */
function normalize(p: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(p)) {
        if (v === undefined || v === '') {
            continue;
        }
        if ((k === 'servers' || k === 'instances' || k === 'exclude_services') && typeof v === 'string') {
            out[k] = v
                .split(',')
                .map((x) => x.trim())
                .filter(Boolean);
        } else if (
            ['concurrency', 'stall_factor', 'stall_min_finished', 'instance_timeout_ms', 'canary', 'auto_promote_after_ms', 'max_failures'].includes(k) &&
            typeof v === 'string' &&
            /^\d+(\.\d+)?$/.test(v)
        ) {
            out[k] = Number(v);
        } else {
            out[k] = v;
        }
    }
    return out;
}

export function mountRollouts(server: Server, rollouts: RolloutManager): void {
    mount(server, { method: 'post', path: '/rollouts', name: 'CreateRollout' }, async (req, res, info) => {
        res.send(200, await rollouts.start(rolloutInput(normalize(paramsOf(req))), info.reqId));
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
    mount(server, { method: 'post', path: '/rollouts/:uuid/promote', name: 'PromoteRollout' }, async (req, res) => {
        res.send(200, await rollouts.promote(String(req.params.uuid)));
    });
    mount(server, { method: 'post', path: '/rollouts/:uuid/resume', name: 'ResumeRollout' }, async (req, res) => {
        res.send(200, await rollouts.resume(String(req.params.uuid)));
    });
    mount(server, { method: 'post', path: '/rollouts/:uuid/revert', name: 'RevertRollout' }, async (req, res, info) => {
        res.send(200, await rollouts.revert(String(req.params.uuid), info.reqId));
    });
}
