// sapiadm migrate: bring instances written by SAPI 2.1.2 up to date. Two
// kinds of work, found separately and reported as such:
//  - params-missing: params.server_uuid or params.image_uuid is absent; it
//    is filled in from CNAPI server.agents (agents, matched by instance
//    uuid) or from VMAPI (vms);
//  - index-missing: params has the values but the stored record lacks the
//    top-level index copies searches use (the server lists those records
//    for `GET /instances?unindexed=true`); rewriting the record with the
//    same params values makes the server write the copies.
// An instance can need both; one update does both. Idempotent.

import type { Command } from 'commander';

import type { CnapiAgent, CnapiClient } from '../clients/cnapi.js';
import type { VmapiClient } from '../clients/vmapi.js';
import type { Instance } from '../model/types.js';
import { mapLimit, type Cli } from './common.js';
import { cnapiClient, vmapiClient } from './downstream.js';
import { describeError, EXIT_DRIFT, EXIT_ERROR, EXIT_OK, UsageError } from './errors.js';
import { param, plural } from './table.js';

/** Why an instance needs work. */
export type WorkKind = 'params-missing' | 'index-missing';

interface Change {
    uuid: string;
    type: string;
    service: string;
    /** What this change fixes ('params-missing' first when both). */
    kinds: WorkKind[];
    /** params values it adds (empty when it only rewrites the index copies). */
    set: { server_uuid?: string; image_uuid?: string };
    applied: boolean;
    error?: string;
}

interface Unresolved {
    uuid: string;
    type: string;
    service: string;
    missing: string[];
    reason: string;
}

interface Outcome {
    change?: Change;
    unresolved?: Unresolved;
}

const FIELDS = ['server_uuid', 'image_uuid'] as const;
const PARALLEL = 10;

export function define(cli: Cli, cmd: Command): void {
    cmd.option('--dry-run', 'report what would change, change nothing')
        .option('--cnapi-url <URL>', 'CNAPI, for agent instances (default: $CNAPI_URL)')
        .option('--vmapi-url <URL>', 'VMAPI, for vm instances (default: $VMAPI_URL)')
        .addHelpText(
            'after',
            `
Two kinds of work, reported per instance and counted apart:
  params missing  params.server_uuid or params.image_uuid is absent. Agents:
                  the server whose server.agents has an entry with the
                  instance's uuid gives server_uuid and image_uuid. VMs:
                  VMAPI GET /vms/:uuid gives both.
  index missing   params has the values, but the record lacks the top-level
                  index copies searches by server or image use (records as
                  SAPI 2.1.2 wrote them; GET /instances?unindexed=true lists
                  them). The record is rewritten with the same params values.
An instance can need both; its one update does both, and it counts as
backfilled. CNAPI and VMAPI are only needed for missing params.
Safe to run again. Exit status: 0 done, 3 some instances could not be
backfilled (listed), 1 API error, 2 a needed CNAPI/VMAPI URL is missing.`,
        )
        .action(async (o: { dryRun?: boolean; cnapiUrl?: string; vmapiUrl?: string }, c: Command) => {
            const api = cli.sapi(c);
            const json = cli.globals(c).json;
            const dryRun = o.dryRun === true;
            const [instances, services, unindexedList] = await Promise.all([api.listInstances(), api.listServices(), api.listUnindexedInstances()]);
            const svcs = new Map(services.map((s) => [s.uuid, s]));
            const unindexed = new Set(unindexedList.map((i) => i.uuid));
            const typeOf = (i: Instance): string => i.type ?? svcs.get(i.service_uuid)?.type ?? 'vm';
            const lacksParams = (i: Instance): boolean => FIELDS.some((f) => !param(i, f));
            const todo = instances.filter((i) => lacksParams(i) || unindexed.has(i.uuid));
            const needSource = todo.filter(lacksParams);
            const agents = needSource.filter((i) => typeOf(i) === 'agent');
            const vms = needSource.filter((i) => typeOf(i) !== 'agent');

            let agentIndex: AgentIndex | undefined;
            if (agents.length > 0) {
                agentIndex = await indexAgents(cnapiClient(cli, o.cnapiUrl));
            }
            let vmapi: VmapiClient | undefined;
            if (vms.length > 0) {
                vmapi = vmapiClient(cli, o.vmapiUrl);
                if (!vmapi) {
                    throw new UsageError(`${plural(vms.length, 'vm instance')} need VMAPI: give --vmapi-url URL or set VMAPI_URL`);
                }
            }

            const outcomes = await mapLimit(todo, PARALLEL, async (inst): Promise<Outcome> => {
                const base = { uuid: inst.uuid, type: typeOf(inst), service: svcs.get(inst.service_uuid)?.name ?? inst.service_uuid };
                const set: Change['set'] = {};
                let unresolved: Unresolved | undefined;
                if (lacksParams(inst)) {
                    const found =
                        base.type === 'agent' ? fromAgents(inst, base.service, agentIndex as AgentIndex) : await fromVmapi(inst, vmapi as VmapiClient);
                    for (const f of FIELDS) {
                        const v = found.values[f];
                        if (!param(inst, f) && v) set[f] = v;
                    }
                    const missing = FIELDS.filter((f) => !param(inst, f) && !set[f]);
                    if (missing.length > 0) {
                        const fallback = Object.keys(set).length === 0 ? 'no source for the missing fields' : 'no source';
                        unresolved = { ...base, missing, reason: found.reason ?? fallback };
                    }
                }
                const kinds: WorkKind[] = [];
                if (Object.keys(set).length > 0) kinds.push('params-missing');
                if (unindexed.has(inst.uuid)) kinds.push('index-missing');
                if (kinds.length === 0) {
                    return unresolved ? { unresolved } : {};
                }
                const change: Change = { ...base, kinds, set, applied: false };
                if (!dryRun) {
                    // The server writes the index copies on every update: the
                    // new values are enough, and a record that only lacks its
                    // copies gets the values its params already has.
                    const params: Record<string, string> = { ...set };
                    if (kinds.includes('index-missing')) {
                        for (const f of FIELDS) {
                            const v = set[f] ?? param(inst, f);
                            if (v) params[f] = v;
                        }
                    }
                    try {
                        await api.updateInstanceParams(inst.uuid, params);
                        change.applied = true;
                    } catch (err) {
                        change.error = describeError(err);
                    }
                }
                return unresolved ? { change, unresolved } : { change };
            });

            const changes = outcomes.flatMap((x) => (x.change ? [x.change] : []));
            const unresolved = outcomes.flatMap((x) => (x.unresolved ? [x.unresolved] : []));
            const failed = changes.filter((ch) => ch.error);
            const counts = countChanges(changes);
            if (json) {
                cli.json({ dry_run: dryRun, checked: instances.length, ...counts, failed: failed.length, changes, unresolved });
            } else {
                printMigration(cli, instances.length, changes, unresolved, dryRun);
            }
            cli.exitCode = failed.length > 0 ? EXIT_ERROR : unresolved.length > 0 ? EXIT_DRIFT : EXIT_OK;
        });
}

/**
 * Changes made (or, in a dry run, planned), not counting failures:
 * `backfilled` set params (their index copies come with them),
 * `reindexed` only rewrote the index copies.
 */
function countChanges(changes: Change[]): { backfilled: number; reindexed: number } {
    const ok = changes.filter((ch) => !ch.error);
    return {
        backfilled: ok.filter((ch) => ch.kinds.includes('params-missing')).length,
        reindexed: ok.filter((ch) => !ch.kinds.includes('params-missing')).length,
    };
}

// ---- sources

interface Found {
    values: { server_uuid?: string; image_uuid?: string };
    reason?: string;
}

interface AgentIndex {
    /** agent instance uuid → where it is installed */
    byUuid: Map<string, { server: string; agent: CnapiAgent }>;
    /** server uuid → its agents */
    byServer: Map<string, CnapiAgent[]>;
}

async function indexAgents(cnapi: CnapiClient): Promise<AgentIndex> {
    const servers = await cnapi.listServers({ extras: 'agents' });
    const index: AgentIndex = { byUuid: new Map(), byServer: new Map() };
    for (const s of servers) {
        const agents = Array.isArray(s.agents) ? s.agents : [];
        index.byServer.set(s.uuid, agents);
        for (const a of agents) {
            if (a.uuid) index.byUuid.set(a.uuid, { server: s.uuid, agent: a });
        }
    }
    return index;
}

function fromAgents(inst: Instance, service: string, index: AgentIndex): Found {
    const hit = index.byUuid.get(inst.uuid);
    if (hit) {
        const values: Found['values'] = { server_uuid: hit.server };
        if (hit.agent.image_uuid) values.image_uuid = hit.agent.image_uuid;
        return { values };
    }
    const server = param(inst, 'server_uuid');
    if (server) {
        const agents = index.byServer.get(server);
        if (!agents) {
            return { values: {}, reason: `server ${server} is not known to CNAPI` };
        }
        const a = agents.find((x) => x.name === service);
        if (a?.image_uuid) {
            return { values: { image_uuid: a.image_uuid } };
        }
        return { values: {}, reason: `server.agents of ${server} has no ${service}` };
    }
    return { values: {}, reason: 'no server.agents entry has this instance uuid' };
}

async function fromVmapi(inst: Instance, vmapi: VmapiClient): Promise<Found> {
    let vm;
    try {
        vm = await vmapi.getVm(inst.uuid);
    } catch (err) {
        return { values: {}, reason: `VMAPI: ${describeError(err)}` };
    }
    if (!vm) {
        return { values: {}, reason: 'VMAPI has no such VM' };
    }
    if (vm.state === 'destroyed') {
        return { values: {}, reason: 'the VM is destroyed' };
    }
    const values: Found['values'] = {};
    if (vm.server_uuid) values.server_uuid = vm.server_uuid;
    if (vm.image_uuid) values.image_uuid = vm.image_uuid;
    return { values };
}

// ---- output

function printMigration(cli: Cli, checked: number, changes: Change[], unresolved: Unresolved[], dryRun: boolean): void {
    if (changes.length === 0 && unresolved.length === 0) {
        cli.out(`Nothing to migrate: all ${plural(checked, 'instance')} have params.server_uuid and params.image_uuid.`);
        return;
    }
    for (const ch of changes) {
        cli.out(`${ch.uuid} (${ch.service} ${ch.type}): ${ch.error ? `FAILED: ${ch.error}` : describeChange(ch, dryRun)}`);
    }
    for (const u of unresolved) {
        cli.out(`${u.uuid} (${u.service} ${u.type}): cannot backfill ${u.missing.map((m) => `params.${m}`).join(', ')}: ${u.reason}`);
    }
    const { backfilled, reindexed } = countChanges(changes);
    const failed = changes.filter((ch) => ch.error).length;
    let done: string;
    if (reindexed === 0) {
        done = `${dryRun ? 'Would backfill' : 'Backfilled'} ${plural(backfilled, 'instance')}`;
    } else if (backfilled === 0) {
        done = `${dryRun ? 'Would reindex' : 'Reindexed'} ${plural(reindexed, 'instance')} (index copies)`;
    } else {
        done =
            `${dryRun ? 'Would backfill' : 'Backfilled'} ${plural(backfilled, 'instance')} (params)` +
            ` and ${dryRun ? 'reindex' : 'reindexed'} ${reindexed} (index copies)`;
    }
    cli.out(
        `${done} of ${checked}` +
            (unresolved.length > 0 ? `; ${plural(unresolved.length, 'instance')} could not be backfilled` : '') +
            (failed > 0 ? `; ${failed} failed` : '') +
            (dryRun ? ' (dry run: nothing changed).' : '.'),
    );
}

/**
 * One instance's change: "set params.X=…" for missing params, "reindex"
 * for missing index copies, both when both.
 */
function describeChange(ch: Change, dryRun: boolean): string {
    const lacks = dryRun ? 'lacks' : 'lacked';
    const reindex = dryRun ? 'would reindex' : 'reindexed';
    if (!ch.kinds.includes('params-missing')) {
        return `${reindex} (the record ${lacks} the index copies of its params)`;
    }
    const fields = Object.entries(ch.set)
        .map(([k, v]) => `params.${k}=${v}`)
        .join(' ');
    const setPart = `${dryRun ? 'would set' : 'set'} ${fields}`;
    return ch.kinds.includes('index-missing') ? `${setPart}; ${reindex} too (the record ${lacks} index copies)` : setPart;
}
