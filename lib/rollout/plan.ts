// What a rollout will do, decided before it starts: which agent services
// go to which images, on which servers, in which order on each server,
// which servers are canaries, and which items need nothing (already at
// their target image) or cannot run (their server is not ready).

import type Logger from 'bunyan';

import type { CnapiAgent, CnapiClient } from '../clients/cnapi.js';
import type { Deployer } from '../deploy/deployer.js';
import { invalidArgument, missingKeys, missingParameter, noSuch } from '../errors.js';
import type { Ctx } from '../model/context.js';
import { mergeParams } from '../model/instance-records.js';
import { find } from '../model/objects.js';
import type { Instance, Service } from '../model/types.js';
import { flagValue, isUuid, validateRequest } from '../model/validate.js';
import type { RequestOf } from '../../schemas/requests.js';
import { BUCKETS, indexFieldValue } from '../stor/buckets.js';
import { eq } from '../stor/store.js';
import type { ItemState, PlanService, Rollout, RolloutItem, RolloutServer, RolloutTotals } from './types.js';

/** What a rollout is started with: the CreateRollout request schema's type. */
export type StartRollout = RequestOf<'CreateRollout'>;

/**
 * The agent whose upgrade restarts cn-agent's task runner: on each server
 * it goes last, so the other agents are installed by the cn-agent known to
 * work there, and nothing queues behind a task runner that is restarting.
 */
export const SELF_UPDATING = 'cn-agent';

/** Check a rollout request: its schema, then that exactly one form is given (409 naming what is wrong). */
export function rolloutInput(params: Record<string, unknown>): StartRollout {
    validateRequest('CreateRollout', params);
    const single = params.service_uuid !== undefined;
    const list = params.services !== undefined;
    const all = flagValue(params.all_agents);
    const forms = [single, list, all].filter(Boolean).length;
    if (forms === 0) {
        if (params.image_uuid !== undefined) {
            throw missingKeys(['service_uuid']);
        }
        throw missingParameter('missing required keys: service_uuid, image_uuid (or give services, or all_agents: true)');
    }
    if (forms > 1) {
        throw invalidArgument('give exactly one of service_uuid (with image_uuid), services or all_agents');
    }
    if (single && params.image_uuid === undefined) {
        throw missingKeys(['image_uuid']);
    }
    if (!single && params.image_uuid !== undefined) {
        throw invalidArgument('image_uuid goes with service_uuid; in a plan each entry of services has its own image_uuid');
    }
    if (single && params.exclude_services !== undefined) {
        throw invalidArgument('exclude_services goes with services or all_agents');
    }
    if (params.auto_promote_after_ms !== undefined && params.canary === undefined) {
        throw invalidArgument('auto_promote_after_ms goes with canary');
    }
    if (typeof params.max_failures === 'string') {
        const pct = Number(params.max_failures.slice(0, -1));
        if (!(pct > 0 && pct <= 100)) {
            throw invalidArgument('max_failures must be a count of at least 1 or a percentage such as "5%" (over 0, at most 100)');
        }
    }
    return params;
}

export interface PlanDeps {
    ctx: Ctx;
    log: Logger;
    agent: Deployer;
    cnapi: CnapiClient | undefined;
}

/** The agent services planned and their images (404/409 for unknown services, exclusions or images). */
export async function planServices(deps: PlanDeps, input: StartRollout, reqId: string): Promise<PlanService[]> {
    const { ctx } = deps;
    const mustAgent = (svc: Service): void => {
        if (svc.type !== 'agent') {
            throw invalidArgument(`service ${svc.name} is not an agent service`);
        }
    };
    let chosen: { svc: Service; image: string | undefined }[];
    if (input.service_uuid !== undefined) {
        const svc = await find<Service>(ctx.store, 'service', input.service_uuid);
        if (!svc) {
            throw noSuch('service', input.service_uuid);
        }
        mustAgent(svc.value);
        chosen = [{ svc: svc.value, image: input.image_uuid }];
    } else {
        const agents = (await ctx.store.find<Service>(BUCKETS.services.name, eq('type', 'agent'))).items.map((s) => s.value);
        if (input.services) {
            chosen = [];
            const seen = new Set<string>();
            for (const entry of input.services) {
                const svc = await find<Service>(ctx.store, 'service', entry.service_uuid);
                if (!svc) {
                    throw noSuch('service', entry.service_uuid);
                }
                mustAgent(svc.value);
                if (seen.has(svc.value.uuid)) {
                    throw invalidArgument(`service ${svc.value.name} (${svc.value.uuid}) is given twice in services`);
                }
                seen.add(svc.value.uuid);
                chosen.push({ svc: svc.value, image: entry.image_uuid });
            }
        } else {
            chosen = agents.map((svc) => ({ svc, image: undefined }));
        }
        const excluded = new Set<string>();
        for (const ex of input.exclude_services ?? []) {
            const hit = agents.filter((s) => (isUuid(ex) ? s.uuid.toLowerCase() === ex.toLowerCase() : s.name === ex));
            if (hit.length === 0) {
                throw invalidArgument(`exclude_services: no agent service named or with uuid "${ex}"`);
            }
            for (const s of hit) excluded.add(s.uuid);
        }
        chosen = chosen.filter((c) => !excluded.has(c.svc.uuid));
        if (chosen.length === 0) {
            throw invalidArgument('nothing to roll out: no agent service is left once the exclusions are applied');
        }
    }
    const out: PlanService[] = [];
    for (const { svc, image } of chosen) {
        const img = image ?? (typeof svc.params?.image_uuid === 'string' ? svc.params.image_uuid : undefined);
        if (img === undefined) {
            throw invalidArgument(`service ${svc.name} (${svc.uuid}) has no params.image_uuid: give its image_uuid in services`);
        }
        // Each image is checked once here (a clear 4xx now, not N failures later).
        await deps.agent.checkImage?.({ reqId, log: deps.log, async: false }, img, svc);
        out.push({ service_uuid: svc.uuid, service_name: svc.name, image_uuid: img });
    }
    return out.sort((a, b) => agentOrder(a.service_name, b.service_name));
}

/** Order of agents on one server: cn-agent last, the others by name. */
export function agentOrder(a: string, b: string): number {
    if (a === SELF_UPDATING || b === SELF_UPDATING) {
        return a === b ? 0 : a === SELF_UPDATING ? 1 : -1;
    }
    return a < b ? -1 : a > b ? 1 : 0;
}

/** One pending item per (server, planned agent instance), server by server, each server's agents in agentOrder. */
export async function planItems(deps: PlanDeps, services: PlanService[], input: StartRollout): Promise<RolloutItem[]> {
    const byServer = new Map<string, RolloutItem[]>();
    if (input.servers) {
        for (const s of input.servers) byServer.set(s, []);
    }
    const wantServers = input.servers ? new Set(input.servers) : null;
    const wantInstances = input.instances ? new Set(input.instances) : null;
    for (const svc of services) {
        for await (const chunk of deps.ctx.store.iterate<Instance>(BUCKETS.instances.name, eq('service_uuid', svc.service_uuid))) {
            for (const { value: inst } of chunk) {
                const server = serverOf(inst);
                if ((wantServers && !wantServers.has(server)) || (wantInstances && !wantInstances.has(inst.uuid))) {
                    continue;
                }
                const item: RolloutItem = {
                    instance_uuid: inst.uuid,
                    server_uuid: server,
                    service_uuid: svc.service_uuid,
                    service_name: svc.service_name,
                    to_image: svc.image_uuid,
                    phase: 'main',
                    state: 'pending',
                    attempts: 0,
                };
                const from = inst.params?.image_uuid;
                if (typeof from === 'string') {
                    item.from_image = from;
                }
                let list = byServer.get(server);
                if (!list) {
                    list = [];
                    byServer.set(server, list);
                }
                list.push(item);
            }
        }
    }
    const items: RolloutItem[] = [];
    for (const list of byServer.values()) {
        items.push(...list.sort((a, b) => agentOrder(a.service_name, b.service_name)));
    }
    return items;
}

/**
 * Before items run: fail those on servers that cannot take an install
 * (one CNAPI call for all), record from_image where SAPI did not know it,
 * and skip those whose agent CNAPI's server.agents already shows at the
 * target image (their SAPI record follows). In a resumed rollout
 * (`resumed`), a pending item found at its target was upgraded since the
 * rollout started (progress is written every 500 ms, so a restart can lose
 * the last steps): it succeeded, and is not run again.
 */
export async function settleItems(
    deps: PlanDeps,
    r: Rollout,
    items: RolloutItem[],
    reqId: string,
    opts: { checkReady: boolean; resumed: boolean },
): Promise<void> {
    const now = new Date().toISOString();
    const servers = [...new Set(items.filter((i) => i.state === 'pending').map((i) => i.server_uuid))];
    if (servers.length === 0) {
        return;
    }
    const info = { reqId, log: deps.log, async: false };
    if (opts.checkReady && deps.agent.checkServers) {
        const notReady = await deps.agent.checkServers(info, servers);
        for (const item of items) {
            const why = notReady.get(item.server_uuid);
            if (why && item.state === 'pending') {
                item.state = 'failed';
                item.error = why;
                item.finished_at = now;
            }
        }
        if (notReady.size > 0) {
            r.warnings.push(`${now}: ${notReady.size} server(s) not ready; their items failed without an attempt`);
        }
    }
    if (!deps.cnapi) {
        return;
    }
    let agents: Map<string, CnapiAgent[]>;
    try {
        const found = await deps.cnapi.listServers({ uuids: servers, extras: ['agents'], reqId });
        agents = new Map(found.map((s) => [s.uuid, s.agents ?? []]));
    } catch (err) {
        // Without server.agents every item simply runs (installing an image again is harmless).
        deps.log.warn({ err, rollout: r.uuid }, 'could not read server.agents; no item is skipped');
        r.warnings.push(`${now}: could not read CNAPI server.agents (${(err as Error).message}); no item skipped`);
        return;
    }
    let skipped = 0;
    let found = 0;
    for (const item of items) {
        if (item.state !== 'pending') {
            continue;
        }
        const entry = agents.get(item.server_uuid)?.find((a) => a.name === item.service_name);
        if (item.from_image === undefined && entry?.image_uuid) {
            item.from_image = entry.image_uuid;
        }
        if (entry?.image_uuid !== item.to_image) {
            continue;
        }
        item.finished_at = now;
        if (opts.resumed) {
            item.state = 'succeeded';
            found += 1;
        } else {
            item.state = 'skipped';
            skipped += 1;
        }
        try {
            const cur = await deps.ctx.store.get<Instance>(BUCKETS.instances.name, item.instance_uuid);
            if (cur && cur.value.params?.image_uuid !== item.to_image) {
                await mergeParams(deps.ctx, item.instance_uuid, { image_uuid: item.to_image });
            }
        } catch (err) {
            deps.log.warn({ err, instance: item.instance_uuid }, 'could not record the image CNAPI reports');
        }
    }
    if (found > 0) {
        r.warnings.push(
            `${now}: ${found} item(s) found at their target image (CNAPI server.agents) since the rollout started: counted as succeeded, not run again`,
        );
    }
    if (skipped > 0) {
        deps.log.info({ rollout: r.uuid, skipped }, 'items already at their target image skipped');
    }
}

/** The first `n` servers with a pending item become canaries. */
export function markCanaries(items: RolloutItem[], n: number): void {
    const canaries = new Set<string>();
    for (const item of items) {
        if (canaries.size >= n) {
            break;
        }
        if (item.state === 'pending') {
            canaries.add(item.server_uuid);
        }
    }
    for (const item of items) {
        if (canaries.has(item.server_uuid)) {
            item.phase = 'canary';
        }
    }
}

// ---- counts and views

/** counts (per item state), from the items: cheap, done at every step. */
export function recount(r: Rollout): void {
    const c: Record<ItemState, number> = { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0, skipped: 0 };
    for (const i of r.items) {
        c[i.state] += 1;
    }
    const { skipped, ...counts } = c;
    r.counts = skipped > 0 ? { ...counts, skipped } : counts;
}

/** totals, from the items: done when the rollout is shown or written. */
export function retotal(r: Rollout): void {
    const busy = new Set<string>();
    const servers = new Set<string>();
    let succeeded = 0;
    let failed = 0;
    let skipped = 0;
    for (const i of r.items) {
        servers.add(i.server_uuid);
        if (i.state === 'pending' || i.state === 'running' || i.state === 'stalled') busy.add(i.server_uuid);
        else if (i.state === 'succeeded') succeeded += 1;
        else if (i.state === 'failed') failed += 1;
        else if (i.state === 'skipped') skipped += 1;
    }
    const totals: RolloutTotals = { servers: servers.size, servers_done: servers.size - busy.size, items: r.items.length, succeeded, failed, skipped };
    r.totals = totals;
}

/** The items grouped by server, in plan order. */
export function serverView(items: RolloutItem[]): RolloutServer[] {
    const groups = new Map<string, RolloutItem[]>();
    for (const i of items) {
        let g = groups.get(i.server_uuid);
        if (!g) {
            g = [];
            groups.set(i.server_uuid, g);
        }
        g.push(i);
    }
    return [...groups.entries()].map(([server_uuid, list]) => ({ server_uuid, state: serverState(list), items: list }));
}

function serverState(items: RolloutItem[]): RolloutServer['state'] {
    const has = (s: ItemState): boolean => items.some((i) => i.state === s);
    if (has('running') || has('stalled')) return 'running';
    if (has('pending')) return 'pending';
    if (has('failed')) return 'failed';
    if (has('canceled')) return 'canceled';
    if (items.every((i) => i.state === 'skipped')) return 'skipped';
    return 'succeeded';
}

/** The server an instance is on, wherever its record keeps it (SAPI 2.1.2's records: only in params). */
export function serverOf(i: Instance): string {
    return indexFieldValue(BUCKETS.instances, i, 'server_uuid') ?? '';
}

/** Failed items of the upgrade (not of a revert) that max_failures allows before pausing; undefined: no limit. */
export function failureLimit(r: Rollout): number | undefined {
    const m = r.max_failures;
    if (m === undefined) {
        return undefined;
    }
    if (typeof m === 'number') {
        return m;
    }
    const toRun = r.items.filter((i) => i.phase !== 'revert' && i.state !== 'skipped').length;
    return Math.max(1, Math.ceil((Number(m.slice(0, -1)) / 100) * toRun));
}

/** Failed upgrade items since the rollout was last resumed. */
export function failuresCounted(r: Rollout): number {
    return r.items.filter((i) => i.phase !== 'revert' && i.state === 'failed').length - (r.failures_baseline ?? 0);
}
