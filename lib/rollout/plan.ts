// What a rollout will do, decided before it starts: which agent services
// go to which images, on which servers, in which order on each server,
// which servers are canaries, and which items need nothing (already at
// their target image) or cannot run (their server is not ready).

import { randomUUID } from 'node:crypto';

import { invalidArgument, noSuch } from '../errors.js';
import { find } from '../model/objects.js';
import type { Instance, Service } from '../model/types.js';
import { flagValue, isUuid } from '../model/validate.js';
import { BUCKETS, indexFieldValue } from '../stor/buckets.js';
import { eq } from '../stor/store.js';
import { isoNow, systemClock } from './clock.js';
import type { PlanDeps, StartRollout } from './input.js';
import { settleItems } from './settle.js';
import {
    DEFAULT_CONCURRENCY,
    DEFAULT_INSTANCE_TIMEOUT_MS,
    DEFAULT_STALL_FACTOR,
    DEFAULT_STALL_MIN_FINISHED,
    type PlanService,
    type Rollout,
    type RolloutItem,
} from './types.js';
import { recount, retotal } from './views.js';

/**
 * The agent whose upgrade restarts cn-agent's task runner: on each server
 * it goes last, so the other agents are installed by the cn-agent known to
 * work there, and nothing queues behind a task runner that is restarting.
 * A plan never installs it: it runs every install task, so a server
 * without it cannot take one (CN setup installs it).
 */
export const SELF_UPDATING = 'cn-agent';

/**
 * Agents every other agent's install uses: on a server they go first, in
 * this order (a server's items run one at a time, so never beside another).
 */
export const FOUNDATION_AGENTS: readonly string[] = ['config-agent', 'agents_core'];

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

/** Order of agents on one server: config-agent and agents_core first, cn-agent last, the others by name. */
export function agentOrder(a: string, b: string): number {
    const rank = (n: string): number =>
        n === SELF_UPDATING ? FOUNDATION_AGENTS.length + 1 : FOUNDATION_AGENTS.includes(n) ? FOUNDATION_AGENTS.indexOf(n) : FOUNDATION_AGENTS.length;
    return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** Items grouped server by server (in first-seen order), each server's in agentOrder. */
function byServerInOrder(items: RolloutItem[]): RolloutItem[] {
    const groups = new Map<string, RolloutItem[]>();
    for (const i of items) {
        const g = groups.get(i.server_uuid);
        if (g) g.push(i);
        else groups.set(i.server_uuid, [i]);
    }
    return [...groups.values()].flatMap((g) => g.sort((a, b) => agentOrder(a.service_name, b.service_name)));
}

/**
 * install_missing: for each targeted server (the given ones, else every
 * server CNAPI knows) that is set up, running and has cn-agent, one item per
 * planned agent SAPI records no instance of there: adopt it when CNAPI's
 * server.agents lists it (recorded, not reinstalled), else install it.
 * Servers that cannot take installs are listed with the reason instead.
 */
async function planInstalls(
    deps: PlanDeps,
    services: PlanService[],
    input: StartRollout,
    planned: RolloutItem[],
    reqId: string,
): Promise<{ items: RolloutItem[]; skipped: { server_uuid: string; reason: string }[] }> {
    if (!deps.cnapi) {
        throw invalidArgument('install_missing needs CNAPI (config key "cnapi.url") to know what each server has');
    }
    const found = await deps.cnapi.listServers({ ...(input.servers ? { uuids: input.servers } : {}), extras: ['agents'], reqId });
    const byUuid = new Map(found.map((s) => [s.uuid, s]));
    const has = new Set(planned.map((i) => `${i.server_uuid}/${i.service_uuid}`));
    const items: RolloutItem[] = [];
    const skipped: { server_uuid: string; reason: string }[] = [];
    for (const uuid of input.servers ?? found.map((s) => s.uuid)) {
        const server = byUuid.get(uuid);
        if (!server) {
            skipped.push({ server_uuid: uuid, reason: 'not found in CNAPI' });
            continue;
        }
        if (server.setup !== true) {
            skipped.push({ server_uuid: uuid, reason: 'not set up' });
            continue;
        }
        if (server.status !== 'running') {
            skipped.push({ server_uuid: uuid, reason: `not running (status: ${String(server.status)})` });
            continue;
        }
        const agents = server.agents ?? [];
        if (!agents.some((a) => a.name === SELF_UPDATING)) {
            skipped.push({ server_uuid: uuid, reason: `${SELF_UPDATING} is not installed there (CN setup installs it; a plan never does)` });
            continue;
        }
        for (const svc of services) {
            if (has.has(`${uuid}/${svc.service_uuid}`)) {
                continue;
            }
            const base = {
                server_uuid: uuid,
                service_uuid: svc.service_uuid,
                service_name: svc.service_name,
                phase: 'main' as const,
                state: 'pending' as const,
                attempts: 0,
            };
            const entry = agents.find((a) => a.name === svc.service_name);
            if (entry) {
                items.push({
                    ...base,
                    action: 'adopt',
                    instance_uuid: entry.uuid ?? randomUUID(),
                    to_image: entry.image_uuid ?? svc.image_uuid,
                    ...(entry.image_uuid ? { from_image: entry.image_uuid } : {}),
                });
            } else if (svc.service_name !== SELF_UPDATING) {
                items.push({ ...base, action: 'install', instance_uuid: randomUUID(), to_image: svc.image_uuid });
            }
        }
    }
    return { items, skipped };
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
 * The whole plan of a rollout, as it would start: its services and images,
 * its items server by server with what each will do (run, or skipped or
 * failed with the reason), canaries, counts. Nothing is written but, unless
 * `record` is false, the image CNAPI reports for skipped items; nothing is
 * installed. A plan that matches no instance at all is refused (409): a
 * mistyped server or a service with no instance there would otherwise
 * "succeed" having done nothing.
 */
export async function planRollout(deps: PlanDeps, input: StartRollout, reqId: string, opts: { record: boolean }): Promise<Rollout> {
    const services = await planServices(deps, input, reqId);
    const now = isoNow(deps.clock ?? systemClock);
    const single = input.service_uuid !== undefined ? services[0] : undefined;
    const rollout: Rollout = {
        uuid: randomUUID(),
        ...(single ? { service_uuid: single.service_uuid, image_uuid: single.image_uuid } : { services }),
        service_name: services.map((s) => s.service_name).join(','),
        ...(input.exclude_services ? { exclude_services: input.exclude_services } : {}),
        concurrency: input.concurrency ?? DEFAULT_CONCURRENCY,
        stall_factor: input.stall_factor ?? DEFAULT_STALL_FACTOR,
        stall_min_finished: input.stall_min_finished ?? DEFAULT_STALL_MIN_FINISHED,
        instance_timeout_ms: input.instance_timeout_ms ?? DEFAULT_INSTANCE_TIMEOUT_MS,
        ...(input.canary !== undefined ? { canary: input.canary } : {}),
        ...(input.auto_promote_after_ms !== undefined ? { auto_promote_after_ms: input.auto_promote_after_ms } : {}),
        ...(input.max_failures !== undefined ? { max_failures: input.max_failures } : {}),
        ...(flagValue(input.allow_downgrade) ? { allow_downgrade: true } : {}),
        state: 'running',
        created_at: now,
        counts: { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0 },
        totals: { servers: 0, servers_done: 0, items: 0, succeeded: 0, failed: 0, skipped: 0 },
        warnings: [],
        items: await planItems(deps, services, input),
    };
    if (flagValue(input.install_missing)) {
        const { items, skipped } = await planInstalls(deps, services, input, rollout.items, reqId);
        rollout.install_missing = true;
        rollout.items = byServerInOrder([...rollout.items, ...items]);
        if (skipped.length > 0) {
            rollout.skipped_servers = skipped;
        }
    }
    const names = services.map((s) => s.service_name).join(', ');
    if (rollout.items.length === 0) {
        if (rollout.skipped_servers) {
            const why = rollout.skipped_servers.map((s) => `${s.server_uuid}: ${s.reason}`).join('; ');
            throw invalidArgument(`nothing to roll out: no server can take ${names} (${why})`);
        }
        const where = input.servers ? ` on server(s) ${input.servers.join(', ')}` : '';
        const which = input.instances ? ` among instance(s) ${input.instances.join(', ')}` : '';
        throw invalidArgument(`nothing to roll out: no instance of ${names}${where}${which} is recorded in SAPI`);
    }
    const matched = new Set(rollout.items.map((i) => i.server_uuid));
    const unmatched = (input.servers ?? []).filter((s) => !matched.has(s));
    if (unmatched.length > 0) {
        rollout.warnings.push(`${now}: no instance of ${names} on server(s) ${unmatched.join(', ')}: nothing planned there`);
    }
    const instances = new Set(rollout.items.map((i) => i.instance_uuid));
    const missing = (input.instances ?? []).filter((i) => !instances.has(i));
    if (missing.length > 0) {
        rollout.warnings.push(`${now}: instance(s) ${missing.join(', ')} not among the planned services' instances: left out`);
    }
    // All servers checked in one CNAPI call: the ones that cannot take an
    // upgrade now fail at once, clearly, instead of one by one later.
    await settleItems(deps, rollout, rollout.items, reqId, {
        checkReady: true,
        resumed: false,
        record: opts.record,
        allowDowngrade: flagValue(input.allow_downgrade),
    });
    if (rollout.canary !== undefined) {
        markCanaries(rollout.items, rollout.canary);
    }
    recount(rollout);
    retotal(rollout);
    return rollout;
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

/** The server an instance is on, wherever its record keeps it (SAPI 2.1.2's records: only in params). */
export function serverOf(i: Instance): string {
    return indexFieldValue(BUCKETS.instances, i, 'server_uuid') ?? '';
}
