// Rollouts (new in SAPI-TS): upgrade an agent service's instances to an
// image, or a plan of agent services, many servers at a time, with
// progress readable while it runs; promote, resume, revert and cancel.

import type { Server } from 'restify';

import { CreateRollout } from '../../schemas/requests.js';
import { invalidArgument } from '../errors.js';
import { MAX_LIMIT, parsePaging } from '../model/lists.js';
import { isUuid } from '../model/validate.js';
import { rolloutInput, type ListRolloutsQuery, type RolloutManager } from '../rollout/runner.js';
import type { Rollout } from '../rollout/types.js';
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

const ROLLOUT_STATES = ['running', 'paused', 'reverting', 'succeeded', 'failed', 'canceled', 'reverted'] as const;

/** GET /rollouts: filters and paging, each checked (409 naming the bad one). */
function listQuery(p: Record<string, unknown>): ListRolloutsQuery {
    const q: ListRolloutsQuery = {};
    const str = (k: string): string | undefined => (typeof p[k] === 'string' && p[k] !== '' ? p[k] : typeof p[k] === 'number' ? String(p[k]) : undefined);
    const svc = str('service_uuid');
    if (svc !== undefined) {
        if (!isUuid(svc)) throw invalidArgument('service_uuid must be a UUID');
        q.service_uuid = svc;
    }
    const state = str('state');
    if (state !== undefined) {
        if (!(ROLLOUT_STATES as readonly string[]).includes(state)) {
            throw invalidArgument(`state must be one of ${ROLLOUT_STATES.join(', ')}`);
        }
        q.state = state as ListRolloutsQuery['state'];
    }
    const marker = str('marker');
    if (marker !== undefined) {
        if (!isUuid(marker)) throw invalidArgument('marker must be a UUID');
        q.marker = marker;
    }
    const page = parsePaging({ limit: str('limit') });
    if (page) q.limit = page.limit;
    return q;
}

/**
 * GET /rollouts/:uuid of a large rollout, a page of servers at a time:
 * `servers_limit` servers after `servers_marker` (a server uuid), with
 * their items only, and `servers_total`. Without them, everything.
 */
function serversPage(r: Rollout, p: Record<string, unknown>): Rollout {
    const limitRaw = p.servers_limit;
    const marker = typeof p.servers_marker === 'string' && p.servers_marker !== '' ? p.servers_marker : undefined;
    if ((limitRaw === undefined || limitRaw === '') && marker === undefined) {
        return r;
    }
    const limit = limitRaw === undefined || limitRaw === '' ? MAX_LIMIT : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
        throw invalidArgument(`servers_limit must be an integer between 1 and ${MAX_LIMIT}`);
    }
    const all = r.servers ?? [];
    let from = 0;
    if (marker !== undefined) {
        const at = all.findIndex((s) => s.server_uuid === marker);
        if (at < 0) {
            throw invalidArgument(`servers_marker ${marker} is not a server of rollout ${r.uuid}`);
        }
        from = at + 1;
    }
    const servers = all.slice(from, from + limit);
    const shown = new Set(servers.map((s) => s.server_uuid));
    return { ...r, servers, items: r.items.filter((i) => shown.has(i.server_uuid)), servers_total: all.length };
}

/** The keys CreateRollout takes: its schema's. */
const CREATE_KEYS = Object.keys(CreateRollout.properties);

export function mountRollouts(server: Server, rollouts: RolloutManager): void {
    mount(
        server,
        { method: 'post', path: '/rollouts', name: 'CreateRollout', accepts: CREATE_KEYS, input: (p: Record<string, unknown>) => rolloutInput(normalize(p)) },
        async (_req, res, info, input) => {
            res.send(200, await rollouts.start(input, info.reqId));
        },
    );
    mount(server, { method: 'get', path: '/rollouts', name: 'ListRollouts', accepts: ['service_uuid', 'state', 'limit', 'marker'] }, async (req, res) => {
        res.send(200, await rollouts.list(listQuery(paramsOf(req))));
    });
    mount(server, { method: 'get', path: '/rollouts/:uuid', name: 'GetRollout', accepts: ['servers_limit', 'servers_marker'] }, async (req, res) => {
        res.send(200, serversPage(await rollouts.get(String(req.params.uuid)), paramsOf(req)));
    });
    mount(server, { method: 'del', path: '/rollouts/:uuid', name: 'CancelRollout', accepts: [] }, async (req, res) => {
        res.send(200, await rollouts.cancel(String(req.params.uuid)));
    });
    mount(server, { method: 'post', path: '/rollouts/:uuid/promote', name: 'PromoteRollout', accepts: [] }, async (req, res) => {
        res.send(200, await rollouts.promote(String(req.params.uuid)));
    });
    mount(server, { method: 'post', path: '/rollouts/:uuid/resume', name: 'ResumeRollout', accepts: [] }, async (req, res) => {
        res.send(200, await rollouts.resume(String(req.params.uuid)));
    });
    mount(server, { method: 'post', path: '/rollouts/:uuid/revert', name: 'RevertRollout', accepts: [] }, async (req, res, info) => {
        res.send(200, await rollouts.revert(String(req.params.uuid), info.reqId));
    });
}
