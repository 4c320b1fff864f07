// Agent drift: what SAPI intends (type=agent instances, agent services'
// params.image_uuid) against what CNAPI says is installed (server.agents),
// agents-contract.md §0.1 and §0.9. Pure: the check command gathers the
// data, this module finds the differences and the fix for each.

import type { CnapiAgent, CnapiServer } from '../clients/cnapi.js';
import type { Instance, Service } from '../model/types.js';
import { param } from './table.js';

export type FindingKind =
    | 'missing-in-sapi'
    | 'missing-on-server'
    | 'uuid-mismatch'
    | 'image-mismatch'
    | 'outdated'
    | 'service-without-image'
    | 'server-gone'
    | 'server-not-setup'
    | 'instance-without-server'
    | 'unknown-agent';

/** What `--fix` does about a finding (SAPI records only; nothing is installed). */
export type Fix =
    /** POST /instances without Accept-Version, as an agent's postinstall adopts itself. */
    | { op: 'adopt'; service_uuid: string; service: string; uuid?: string; server_uuid: string; image_uuid?: string }
    /** DELETE /instances/:uuid without Accept-Version (record only). */
    | { op: 'forget'; instance: string; service: string; server_uuid: string }
    /** DELETE /servers/:uuid/instances (TRITON-416). */
    | { op: 'forget-server'; server_uuid: string }
    /** PUT /instances/:uuid {params: {image_uuid}}. */
    | { op: 'set-image'; instance: string; image_uuid: string };

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

export interface DriftReport {
    servers: ServerReport[];
    /** Findings not tied to one server (services, instances without a server). */
    general: Finding[];
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
}

export const LABELS: Record<FindingKind, string> = {
    'missing-in-sapi': 'missing in SAPI',
    'missing-on-server': 'missing on server',
    'uuid-mismatch': 'uuid mismatch',
    'image-mismatch': 'image mismatch',
    outdated: 'outdated',
    'service-without-image': 'no image',
    'server-gone': 'server gone',
    'server-not-setup': 'server not setup',
    'instance-without-server': 'no server_uuid',
    'unknown-agent': 'unknown agent',
};

export function analyzeDrift(input: DriftInput): DriftReport {
    const general: Finding[] = [];
    const byServer = new Map<string, Instance[]>();
    for (const inst of input.instances) {
        const server = param(inst, 'server_uuid');
        if (!server) {
            general.push({
                kind: 'instance-without-server',
                instance: inst.uuid,
                message: `agent instance ${inst.uuid} has no params.server_uuid (data from before SAPI 3)`,
                commands: ['sapiadm migrate --cnapi-url URL'],
            });
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
    const servers = scope.map((uuid) => serverReport(uuid, cnapi.get(uuid), byServer.get(uuid) ?? [], input.services));
    servers.sort((a, b) => (a.hostname ?? '~').localeCompare(b.hostname ?? '~') || a.uuid.localeCompare(b.uuid));

    const all = [...general, ...servers.flatMap((s) => s.findings)];
    return {
        servers,
        general,
        drift: all.filter((f) => !f.note).length,
        fixable: all.filter((f) => f.fix).length,
    };
}

function serverReport(uuid: string, cs: CnapiServer | undefined, insts: Instance[], services: Service[]): ServerReport {
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
    return { ...base, state: 'setup', hostname: cs.hostname, findings: compareServer(cs, insts, services) };
}

function compareServer(cs: CnapiServer, insts: Instance[], services: Service[]): Finding[] {
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
        out.push(...compareAgent(S, svc, entry, own));
    }
    return out;
}

function compareAgent(S: string, svc: Service, entry: CnapiAgent | undefined, own: Instance[]): Finding[] {
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

    if (own.length === 0) {
        out.push({
            ...at,
            kind: 'missing-in-sapi',
            ...(entry.uuid ? { instance: entry.uuid } : {}),
            message: `${name}${entry.version ? ` ${entry.version}` : ''} is installed (instance ${entry.uuid ?? 'without a uuid file'}, image ${entry.image_uuid ?? '?'}) but SAPI has no instance`,
            commands: [adoptCmd],
            fix: adopt,
        });
    } else if (entry.uuid && (own.length > 1 || own[0]?.uuid !== entry.uuid)) {
        const recorded = own.map((i) => i.uuid).join(', ');
        out.push({
            ...at,
            kind: 'uuid-mismatch',
            instance: entry.uuid,
            message: `the node's ${name} is instance ${entry.uuid} but SAPI records ${recorded} (recording it replaces those, keeping their metadata)`,
            commands: [adoptCmd],
            fix: adopt,
        });
    } else if (own[0]) {
        const inst = own[0];
        const recorded = param(inst, 'image_uuid');
        if (entry.image_uuid && recorded !== entry.image_uuid) {
            out.push({
                ...at,
                kind: 'image-mismatch',
                instance: inst.uuid,
                message: `${name} instance ${inst.uuid} records image ${recorded ?? '(none)'} but the server has ${entry.image_uuid}`,
                commands: [
                    `sapiadm instances update ${inst.uuid} -p image_uuid=${entry.image_uuid}`,
                    ...(recorded ? [`or install the recorded image: sapiadm instances upgrade ${inst.uuid} ${recorded}`] : []),
                ],
                fix: { op: 'set-image', instance: inst.uuid, image_uuid: entry.image_uuid },
            });
        }
    }

    const intended = param(svc, 'image_uuid');
    const current = entry.image_uuid ?? param(own[0] ?? {}, 'image_uuid');
    if (intended && current && current !== intended) {
        out.push({
            ...at,
            kind: 'outdated',
            ...(entry.uuid ? { instance: entry.uuid } : {}),
            message: `${name} runs image ${current}; the service wants ${intended}`,
            commands: [`sapiadm rollout ${name} ${intended} --servers ${S}`],
        });
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
