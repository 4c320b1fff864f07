// Agent drift: what SAPI intends (type=agent instances, agent services'
// params.image_uuid) against what CNAPI says is installed (server.agents,
// the truth about what runs). Pure: the check command gathers the
// data, this module finds the differences and the fix for each.
//
// Images are compared by version where the versions are known (CNAPI's
// server.agents entries, IMGAPI's images): an agent newer than the image
// its service names is "newer", not "outdated" (a rollout would skip it,
// and going back is the operator's choice, never a fix).
//
// Two leftovers of SAPI 2.1.2 are reported as such: agent instances with
// no params.server_uuid ("unplaced": agents that registered before they
// reported their server), and several instances of one agent service on
// one server (2.1.2 added one per registration instead of replacing).

import type { CnapiAgent, CnapiServer } from '../clients/cnapi.js';
import type { Instance, Service } from '../model/types.js';
import { param } from './table.js';
import { compareVersions } from '../rollout/versions.js';

export type FindingKind =
    | 'missing'
    | 'missing-in-sapi'
    | 'missing-on-server'
    | 'uuid-mismatch'
    | 'duplicate'
    | 'image-mismatch'
    | 'outdated'
    | 'newer'
    | 'service-without-image'
    | 'server-gone'
    | 'server-not-setup'
    | 'unplaced'
    | 'unknown-agent';

/** What `--fix` does about a finding (SAPI records only; nothing is installed). */
export type Fix =
    /** POST /instances without Accept-Version, as an agent's postinstall adopts itself. */
    | { op: 'adopt'; service_uuid: string; service: string; uuid?: string; server_uuid: string; image_uuid?: string }
    /** DELETE /instances/:uuid without Accept-Version (record only). */
    | { op: 'forget'; instance: string; service: string; server_uuid: string }
    /** DELETE /servers/:uuid/instances: forget every agent instance of a server (records only). */
    | { op: 'forget-server'; server_uuid: string }
    /** PUT /instances/:uuid {params: {image_uuid}}. */
    | { op: 'set-image'; instance: string; image_uuid: string }
    /** DELETE /instances/:uuid without Accept-Version for each of `instances` (records only), keeping `keep`. */
    | { op: 'forget-duplicates'; service: string; server_uuid: string; keep: string; instances: string[] }
    /** Install the agent through a plan (POST /rollouts with install_missing): the one fix that installs. */
    | { op: 'install'; service_uuid: string; service: string; server_uuid: string };

export interface Finding {
    kind: FindingKind;
    server_uuid?: string;
    service?: string;
    instance?: string;
    message: string;
    /** How to fix it by hand (one or two commands). */
    commands: string[];
    fix?: Fix;
    /** Informational: not counted as drift. */
    note?: boolean;
}

export interface ServerReport {
    uuid: string;
    hostname?: string;
    /** CNAPI's view: `gone` when CNAPI does not know the server. */
    state: 'setup' | 'not-setup' | 'gone';
    instances: number;
    findings: Finding[];
}

/** An agent instance without params.server_uuid. */
export interface Unplaced {
    instance: string;
    service: string;
    /** The server whose server.agents has an entry with this instance's uuid. */
    server_uuid?: string;
}

/** Several instances of one agent service recorded on one server. */
export interface Duplicates {
    server_uuid: string;
    service: string;
    instances: string[];
    /** The instance server.agents reports (may be none of `instances`). */
    keep?: string;
}

export interface DriftReport {
    servers: ServerReport[];
    /** Findings not tied to one server (services, instances without a server). */
    general: Finding[];
    /** Every unplaced agent instance (each also has a finding). */
    unplaced: Unplaced[];
    /** Every server with duplicate agent instances (each also has a finding). */
    duplicates: Duplicates[];
    drift: number;
    fixable: number;
}

export interface DriftInput {
    /** Agent services. */
    services: Service[];
    /** type=agent instances. */
    instances: Instance[];
    /** CNAPI servers, with `agents`. */
    servers: CnapiServer[];
    /** Only these servers (else every server with agent instances or set up in CNAPI). */
    only?: string[];
    /** Image uuid → version, where known (server.agents entries, IMGAPI). */
    versions?: ReadonlyMap<string, string>;
}

export const LABELS: Record<FindingKind, string> = {
    missing: 'missing',
    'missing-in-sapi': 'missing in SAPI',
    'missing-on-server': 'missing on server',
    'uuid-mismatch': 'uuid mismatch',
    duplicate: 'duplicates',
    'image-mismatch': 'image mismatch',
    outdated: 'outdated',
    newer: 'newer',
    'service-without-image': 'no image',
    'server-gone': 'server gone',
    'server-not-setup': 'server not setup',
    unplaced: 'unplaced',
    'unknown-agent': 'unknown agent',
};

/** The agent that runs install tasks: CN setup installs it, never a plan. */
const SELF_INSTALLER = 'cn-agent';

export function analyzeDrift(input: DriftInput): DriftReport {
    const general: Finding[] = [];
    const byServer = new Map<string, Instance[]>();
    const svcByUuid = new Map(input.services.map((s) => [s.uuid, s]));
    const unplaced: Instance[] = [];
    for (const inst of input.instances) {
        const server = param(inst, 'server_uuid');
        if (!server) {
            unplaced.push(inst);
            continue;
        }
        byServer.set(server, [...(byServer.get(server) ?? []), inst]);
    }
    for (const svc of input.services) {
        if (!param(svc, 'image_uuid')) {
            const seen = commonImage(input.servers, svc.name);
            general.push({
                kind: 'service-without-image',
                service: svc.name,
                message: `agent service ${svc.name} (${svc.uuid}) has no params.image_uuid: SAPI cannot tell which image it intends`,
                commands: [`sapiadm services update ${svc.name} -p image_uuid=${seen ?? '<IMAGE>'}`],
            });
        }
    }

    const cnapi = new Map(input.servers.map((s) => [s.uuid, s]));
    const scope = input.only
        ? [...new Set(input.only)]
        : [...new Set([...byServer.keys(), ...input.servers.filter((s) => s.setup === true).map((s) => s.uuid)])];

    // Where each unplaced instance runs: the set-up server in scope whose
    // server.agents has an entry of its service with its uuid.
    const placedOn = new Map<string, string>();
    const unplacedUuids = new Map(unplaced.map((i) => [i.uuid, i]));
    for (const uuid of scope) {
        const cs = cnapi.get(uuid);
        if (cs?.setup !== true) continue;
        for (const a of Array.isArray(cs.agents) ? cs.agents : []) {
            const inst = a.uuid ? unplacedUuids.get(a.uuid) : undefined;
            if (inst && svcByUuid.get(inst.service_uuid)?.name === a.name && !placedOn.has(inst.uuid)) {
                placedOn.set(inst.uuid, uuid);
            }
        }
    }
    for (const inst of unplaced) {
        if (placedOn.has(inst.uuid)) continue; // reported with its server
        const service = svcByUuid.get(inst.service_uuid)?.name ?? inst.service_uuid;
        general.push({
            kind: 'unplaced',
            service,
            instance: inst.uuid,
            message: input.only
                ? `${service} instance ${inst.uuid} has no params.server_uuid (SAPI 2.1.2 data) and none of the servers checked reports it; \`sapiadm migrate\` looks for it in every server's server.agents`
                : `${service} instance ${inst.uuid} has no params.server_uuid (SAPI 2.1.2 data), and no server.agents entry has its uuid, so \`sapiadm migrate\` cannot place it either`,
            commands: input.only
                ? ['sapiadm migrate --cnapi-url URL']
                : [`sapiadm instances delete ${inst.uuid} --record-only`, 'or once a server reports it: sapiadm migrate --cnapi-url URL'],
        });
    }

    const versions = input.versions ?? new Map<string, string>();
    const servers = scope.map((uuid) => serverReport(uuid, cnapi.get(uuid), byServer.get(uuid) ?? [], input.services, unplacedUuids, versions));
    servers.sort((a, b) => (a.hostname ?? '~').localeCompare(b.hostname ?? '~') || a.uuid.localeCompare(b.uuid));

    const duplicates: Duplicates[] = [];
    for (const [server, insts] of byServer) {
        if (input.only && !input.only.includes(server)) continue;
        const groups = new Map<string, Instance[]>();
        for (const inst of insts) {
            groups.set(inst.service_uuid, [...(groups.get(inst.service_uuid) ?? []), inst]);
        }
        for (const [svcUuid, group] of groups) {
            if (group.length < 2) continue;
            const service = svcByUuid.get(svcUuid)?.name ?? svcUuid;
            const cs = cnapi.get(server);
            const keep = (cs?.agents ?? []).find((a) => a.name === service)?.uuid;
            duplicates.push({ server_uuid: server, service, instances: group.map((i) => i.uuid), ...(keep ? { keep } : {}) });
        }
    }

    const all = [...general, ...servers.flatMap((s) => s.findings)];
    return {
        servers,
        general,
        unplaced: unplaced.map((i) => {
            const u: Unplaced = { instance: i.uuid, service: svcByUuid.get(i.service_uuid)?.name ?? i.service_uuid };
            const on = placedOn.get(i.uuid);
            if (on) u.server_uuid = on;
            return u;
        }),
        duplicates,
        drift: all.filter((f) => !f.note).length,
        fixable: all.filter((f) => f.fix).length,
    };
}

function serverReport(
    uuid: string,
    cs: CnapiServer | undefined,
    insts: Instance[],
    services: Service[],
    unplaced: Map<string, Instance>,
    versions: ReadonlyMap<string, string>,
): ServerReport {
    const base = { uuid, instances: insts.length };
    if (!cs || cs.setup !== true) {
        const gone = !cs;
        const report: ServerReport = { ...base, state: gone ? 'gone' : 'not-setup', findings: [] };
        if (cs) report.hostname = cs.hostname;
        if (insts.length > 0) {
            report.findings.push({
                kind: gone ? 'server-gone' : 'server-not-setup',
                server_uuid: uuid,
                message: gone
                    ? `CNAPI does not know this server (deleted?) but SAPI has ${insts.length} agent instance(s) on it`
                    : `CNAPI reports setup: false (factory reset?) but SAPI has ${insts.length} agent instance(s) on it`,
                commands: [`sapiadm instances forget-server ${uuid}`],
                fix: { op: 'forget-server', server_uuid: uuid },
            });
        }
        return report;
    }
    return { ...base, state: 'setup', hostname: cs.hostname, findings: compareServer(cs, insts, services, unplaced, versions) };
}

function compareServer(
    cs: CnapiServer,
    insts: Instance[],
    services: Service[],
    unplaced: Map<string, Instance>,
    versions: ReadonlyMap<string, string>,
): Finding[] {
    const S = cs.uuid;
    const out: Finding[] = [];
    const agents: CnapiAgent[] = Array.isArray(cs.agents) ? cs.agents : [];
    const byName = new Map<string, Service>();
    for (const svc of services) {
        if (!byName.has(svc.name)) byName.set(svc.name, svc);
    }
    const svcByUuid = new Map(services.map((s) => [s.uuid, s]));

    for (const a of agents) {
        if (!byName.has(a.name)) {
            out.push({
                kind: 'unknown-agent',
                server_uuid: S,
                service: a.name,
                message: `${a.name} is installed but SAPI has no agent service of that name`,
                commands: [],
                note: true,
            });
        }
    }

    const names = new Set<string>(agents.map((a) => a.name).filter((n) => byName.has(n)));
    for (const inst of insts) {
        const svc = svcByUuid.get(inst.service_uuid);
        if (svc) names.add(svc.name);
    }
    for (const name of [...names].sort()) {
        const svc = byName.get(name) as Service;
        const entry = agents.find((a) => a.name === name);
        const own = insts.filter((i) => svcByUuid.get(i.service_uuid)?.name === name);
        const lost = entry?.uuid ? unplaced.get(entry.uuid) : undefined;
        out.push(...compareAgent(S, svc, entry, own, versions, lost?.service_uuid === svc.uuid ? lost : undefined));
    }
    // Agent services neither SAPI nor server.agents has here: missing (a
    // server set up before the agent existed, or whose install failed).
    // Only where installs can run: the server runs, and has cn-agent (which
    // runs them; no plan installs cn-agent itself).
    if (cs.status === 'running' && agents.some((a) => a.name === SELF_INSTALLER)) {
        for (const [name, svc] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
            if (names.has(name) || name === SELF_INSTALLER || typeof svc.params?.image_uuid !== 'string') continue;
            out.push({
                kind: 'missing',
                server_uuid: S,
                service: name,
                message: `${name} is not installed here (not in server.agents) and SAPI has no instance of it`,
                commands: [`sapiadm server setup-agents ${S}`],
                fix: { op: 'install', service_uuid: svc.uuid, service: name, server_uuid: S },
            });
        }
    }
    return out;
}

/**
 * One agent service on one set-up server. `unplaced`: the SAPI instance
 * without params.server_uuid whose uuid is the server's entry.
 */
function compareAgent(
    S: string,
    svc: Service,
    entry: CnapiAgent | undefined,
    own: Instance[],
    versions: ReadonlyMap<string, string>,
    unplaced?: Instance,
): Finding[] {
    const out: Finding[] = [];
    const name = svc.name;
    const at = { server_uuid: S, service: name };

    if (!entry) {
        for (const inst of own) {
            out.push({
                ...at,
                kind: 'missing-on-server',
                instance: inst.uuid,
                message: `${name} instance ${inst.uuid} is in SAPI but server.agents has no ${name}`,
                commands: [
                    `sapiadm instances delete ${inst.uuid} --record-only`,
                    `or reinstall it: sapiadm instances upgrade ${inst.uuid} ${param(inst, 'image_uuid') ?? param(svc, 'image_uuid') ?? '<IMAGE>'}`,
                ],
                fix: { op: 'forget', instance: inst.uuid, service: name, server_uuid: S },
            });
        }
        return out;
    }

    const adopt: Fix = { op: 'adopt', service_uuid: svc.uuid, service: name, server_uuid: S };
    if (entry.uuid) adopt.uuid = entry.uuid;
    if (entry.image_uuid) adopt.image_uuid = entry.image_uuid;
    const adoptCmd =
        `sapiadm instances create --record-only --service ${name} --server ${S}` +
        (entry.uuid ? ` --uuid ${entry.uuid}` : '') +
        (entry.image_uuid ? ` --image ${entry.image_uuid}` : '');

    /** The record that matches the server's entry, when there is exactly one to compare images with. */
    let kept: Instance | undefined;
    if (own.length === 0 && unplaced) {
        // Recording the entry's uuid updates that record: it gets its server.
        out.push({
            ...at,
            kind: 'unplaced',
            instance: unplaced.uuid,
            message: `${name} instance ${unplaced.uuid} has no params.server_uuid (SAPI 2.1.2 data); this server's server.agents has it, so \`sapiadm migrate\` (or --fix) records it here`,
            commands: ['sapiadm migrate --cnapi-url URL', `or ${adoptCmd}`],
            fix: adopt,
        });
    } else if (own.length === 0) {
        out.push({
            ...at,
            kind: 'missing-in-sapi',
            ...(entry.uuid ? { instance: entry.uuid } : {}),
            message: `${name}${entry.version ? ` ${entry.version}` : ''} is installed (instance ${entry.uuid ?? 'without a uuid file'}, image ${entry.image_uuid ?? '?'}) but SAPI has no instance`,
            commands: [adoptCmd],
            fix: adopt,
        });
    } else if (own.length > 1 && (!entry.uuid || own.some((i) => i.uuid === entry.uuid))) {
        // Duplicates left by SAPI 2.1.2; the agent's next self-adoption
        // replaces them with its own instance. --fix does not wait for it:
        // it keeps the instance server.agents reports and forgets the rest.
        kept = own.find((i) => i.uuid === entry.uuid);
        const others = own.filter((i) => i !== kept).map((i) => i.uuid);
        const finding: Finding = {
            ...at,
            kind: 'duplicate',
            message:
                `SAPI records ${own.length} ${name} instances on this server (${own.map((i) => i.uuid).join(', ')}), left by SAPI 2.1.2; ` +
                `the agent's next adoption replaces them with its own instance` +
                (kept
                    ? `. server.agents reports ${kept.uuid}: --fix keeps it and forgets the others`
                    : `. server.agents gives no uuid, so SAPI cannot tell which one is the agent`),
            commands: kept
                ? others.map((u) => `sapiadm instances delete ${u} --record-only`)
                : [`sapiadm instances delete <UUID> --record-only (each one but the agent's)`],
        };
        if (kept) {
            finding.instance = kept.uuid;
            finding.fix = { op: 'forget-duplicates', service: name, server_uuid: S, keep: kept.uuid, instances: others };
        }
        out.push(finding);
    } else if (entry.uuid && (own.length > 1 || own[0]?.uuid !== entry.uuid)) {
        const recorded = own.map((i) => i.uuid).join(', ');
        out.push({
            ...at,
            kind: 'uuid-mismatch',
            instance: entry.uuid,
            message: `the node's ${name} is instance ${entry.uuid} but SAPI records ${recorded} (recording it replaces ${own.length > 1 ? 'those' : 'that one'}, keeping their metadata)`,
            commands: [adoptCmd],
            fix: adopt,
        });
    } else {
        kept = own[0];
    }
    if (kept) {
        const recorded = param(kept, 'image_uuid');
        if (entry.image_uuid && recorded !== entry.image_uuid) {
            out.push({
                ...at,
                kind: 'image-mismatch',
                instance: kept.uuid,
                message: `${name} instance ${kept.uuid} records image ${recorded ?? '(none)'} but the server has ${entry.image_uuid}`,
                commands: [
                    `sapiadm instances update ${kept.uuid} -p image_uuid=${entry.image_uuid}`,
                    ...(recorded ? [`or install the recorded image: sapiadm instances upgrade ${kept.uuid} ${recorded}`] : []),
                ],
                fix: { op: 'set-image', instance: kept.uuid, image_uuid: entry.image_uuid },
            });
        }
    }

    const intended = param(svc, 'image_uuid');
    const current = entry.image_uuid ?? param(kept ?? own[0] ?? unplaced ?? {}, 'image_uuid');
    if (intended && current && current !== intended) {
        // The server's own word on the version it runs first, then the image's.
        const runs = (entry.image_uuid === current ? entry.version : undefined) ?? versions.get(current);
        const wants = versions.get(intended);
        const on = (image: string, version: string | undefined): string => (version ? `${version} (image ${image})` : `image ${image}`);
        const cmp = compareVersions(runs, wants);
        const instance = entry.uuid ? { instance: entry.uuid } : {};
        if (cmp !== null && cmp > 0) {
            // Newer than intended: no fix and no rollout goes back by itself.
            out.push({
                ...at,
                kind: 'newer',
                ...instance,
                message:
                    `${name} runs ${on(current, runs)}, newer than the ${on(intended, wants)} the service names;` +
                    ' a rollout skips it (it never downgrades unless asked)',
                commands: [
                    `sapiadm services update ${name} -p image_uuid=${current}`,
                    `or go back: sapiadm rollout ${name} ${intended} --servers ${S} --allow-downgrade`,
                ],
            });
        } else {
            out.push({
                ...at,
                kind: 'outdated',
                ...instance,
                message:
                    `${name} runs ${on(current, runs)}; the service wants ${on(intended, wants)}` +
                    (cmp === null ? ' (a version unknown: told apart by image uuid only; IMGAPI, --imgapi-url, gives the versions)' : ''),
                commands: [`sapiadm rollout ${name} ${intended} --servers ${S}`],
            });
        }
    }
    return out;
}

/** The image most servers report for an agent (a hint for a service without one). */
function commonImage(servers: CnapiServer[], name: string): string | undefined {
    const counts = new Map<string, number>();
    for (const s of servers) {
        const img = (s.agents ?? []).find((a) => a.name === name)?.image_uuid;
        if (img) counts.set(img, (counts.get(img) ?? 0) + 1);
    }
    return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
}
