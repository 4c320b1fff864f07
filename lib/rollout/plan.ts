// What a rollout will do, decided before it starts: which agent services
// go to which images, on which servers, in which order on each server,
// which servers are canaries, and which items need nothing (already at
// their target image) or cannot run (their server is not ready).

import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';

import type Logger from 'bunyan';

import type { CnapiAgent, CnapiClient } from '../clients/cnapi.js';
import type { ImgapiClient } from '../clients/imgapi.js';
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
import {
    DEFAULT_CONCURRENCY,
    DEFAULT_INSTANCE_TIMEOUT_MS,
    DEFAULT_STALL_FACTOR,
    DEFAULT_STALL_MIN_FINISHED,
    type ItemState,
    type PlanService,
    type Rollout,
    type RolloutItem,
    type RolloutPreview,
    type RolloutServer,
    type RolloutTotals,
} from './types.js';

/** What a rollout is started with: the CreateRollout request schema's type. */
export type StartRollout = RequestOf<'CreateRollout'>;

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
    if (flagValue(params.install_missing) && params.instances !== undefined) {
        throw invalidArgument('install_missing goes with servers, not instances (an agent to install has no instance yet)');
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
    /** For the versions of images server.agents does not name (none: versions are compared only where CNAPI gives them). */
    imgapi?: ImgapiClient | undefined;
}

// ---- versions

const require = createRequire(import.meta.url);
let semverLib: typeof import('semver') | undefined;

/**
 * a vs b as versions: negative, 0 or positive; null when either is not a
 * version (then nothing is concluded from them). Agent images carry semver
 * versions ("1.1.0", "4.8.1-20230505T..."): the build stamp is a
 * prerelease tag and orders builds of one version.
 */
export function compareVersions(a: string | undefined, b: string | undefined): number | null {
    if (!a || !b) {
        return null;
    }
    semverLib ??= require('semver') as typeof import('semver');
    const va = semverLib.valid(a) ?? semverLib.valid(semverLib.coerce(a));
    const vb = semverLib.valid(b) ?? semverLib.valid(semverLib.coerce(b));
    return va && vb ? semverLib.compare(va, vb) : null;
}

/** Image versions, each looked up once per plan (unknown images: undefined). */
function versionLookup(deps: PlanDeps, reqId: string): (image: string | undefined) => Promise<string | undefined> {
    const known = new Map<string, Promise<string | undefined>>();
    return (image) => {
        if (!image || !deps.imgapi) {
            return Promise.resolve(undefined);
        }
        let v = known.get(image);
        if (!v) {
            v = deps.imgapi.getImage(image, { reqId }).then(
                (img) => img?.version,
                () => undefined,
            );
            known.set(image, v);
        }
        return v;
    };
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

/** How settleItems decides. */
export interface SettleOptions {
    /** Fail the items of servers that cannot take an install now. */
    checkReady: boolean;
    /** A rollout taken over after a restart (see settleItems). */
    resumed: boolean;
    /** Record in SAPI the image CNAPI reports for skipped items (false: a preview writes nothing). */
    record?: boolean;
    /** Run items whose agent is newer than their target (a revert, or allow_downgrade). */
    allowDowngrade?: boolean;
}

/**
 * Before items run: fail those on servers that cannot take an install
 * (one CNAPI call for all), record from_image and the versions, and skip
 * those whose agent CNAPI's server.agents already shows at the target
 * image (their SAPI record follows), or at a newer version than the
 * target's, unless going back is allowed: a rollout never downgrades by
 * accident. In a resumed rollout (`resumed`), a pending item found at its
 * target was upgraded since the rollout started (progress is written every
 * 500 ms, so a restart can lose the last steps): it succeeded, and is not
 * run again.
 */
export async function settleItems(deps: PlanDeps, r: Rollout, items: RolloutItem[], reqId: string, opts: SettleOptions): Promise<void> {
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
                item.reason = 'server not ready';
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
    let newer = 0;
    const versionOf = versionLookup(deps, reqId);
    for (const item of items) {
        if (item.state !== 'pending') {
            continue;
        }
        const entry = agents.get(item.server_uuid)?.find((a) => a.name === item.service_name);
        if (item.from_image === undefined && entry?.image_uuid) {
            item.from_image = entry.image_uuid;
        }
        // What runs there now, by CNAPI (else SAPI's record), and where it goes.
        const onServer = entry?.image_uuid ?? item.from_image;
        const fromVersion = entry?.image_uuid && entry.version ? entry.version : await versionOf(onServer);
        const toVersion = await versionOf(item.to_image);
        if (fromVersion) item.from_version = fromVersion;
        if (toVersion) item.to_version = toVersion;
        if (item.action !== undefined && item.action !== 'upgrade') {
            // Installs, adoptions and uninstalls are not compared with a target.
            continue;
        }
        if (entry?.image_uuid !== item.to_image) {
            const cmp = compareVersions(fromVersion, toVersion);
            if (cmp !== null && cmp > 0 && !opts.allowDowngrade && !opts.resumed) {
                item.state = 'skipped';
                item.reason = `newer than the target (${String(fromVersion)} > ${String(toVersion)}); allow_downgrade to go back`;
                item.finished_at = now;
                newer += 1;
            }
            continue;
        }
        item.finished_at = now;
        if (opts.resumed) {
            item.state = 'succeeded';
            found += 1;
        } else {
            item.state = 'skipped';
            item.reason = 'already at the target image';
            skipped += 1;
        }
        if (opts.record === false) {
            continue;
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
    if (newer > 0) {
        r.warnings.push(`${now}: ${newer} item(s) skipped: their agent is newer than the target (allow_downgrade to go back)`);
    }
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
    const now = new Date().toISOString();
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

export function previewOf(r: Rollout): RolloutPreview {
    const { uuid: _uuid, state: _state, ...rest } = r;
    const pending = r.items.filter((i) => i.state === 'pending');
    const byAction = new Map<string, number>();
    for (const i of pending) byAction.set(i.action ?? 'upgrade', (byAction.get(i.action ?? 'upgrade') ?? 0) + 1);
    const what = [...byAction].map(([a, n]) => `${n} ${a}${n === 1 ? '' : 's'}`).join(', ');
    const summary =
        pending.length > 0
            ? `${pending.length} of ${r.items.length} item(s) on ${r.totals.servers} server(s) would run: ${what}`
            : `nothing would run: ${nothingReason(r)}`;
    return { ...rest, dry_run: true, state: 'planned', summary, servers: serverView(r.items) };
}

/** Why a plan has nothing to run, in words. */
export function nothingReason(r: Rollout): string {
    const at = r.items.filter((i) => i.reason === 'already at the target image').length;
    const newer = r.items.filter((i) => i.state === 'skipped' && i.reason?.startsWith('newer')).length;
    const failed = r.items.filter((i) => i.state === 'failed').length;
    const parts = [
        ...(at > 0 ? [`${at} already at the target image`] : []),
        ...(newer > 0 ? [`${newer} newer than the target`] : []),
        ...(failed > 0 ? [`${failed} on servers not ready`] : []),
    ];
    return `every item is skipped or failed before running (${parts.join(', ')})`;
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
