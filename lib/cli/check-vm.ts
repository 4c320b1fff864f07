// sapiadm check vm-instances: compare SAPI's vm instances with VMAPI's core
// VMs (VMs of the applications' owner, the admin user, whose
// tags.smartdc_role names a SAPI vm service) and, with --fix, make SAPI's
// records match: forget records of VMs that are destroyed or missing, adopt
// core VMs SAPI does not know (record only, `exists: true`) and record the
// image each VM runs. No VM is ever provisioned or destroyed.

import type { Command } from 'commander';

import type { VmapiClient, VmapiVm } from '../clients/vmapi.js';
import type { Application, Instance, Service } from '../model/types.js';
import { mustUuid, positiveInt } from './args.js';
import { runCheck } from './check-flow.js';
import { mapLimit, type Cli } from './common.js';
import { vmapiClient } from './downstream.js';
import { describeError, UsageError } from './errors.js';
import type { SapiApi } from './sapi-api.js';
import { plural } from './table.js';

/** VMAPI answers at most this many VMs per page. */
const VM_PAGE = 1000;
/** VMs looked up one by one (SAPI instances the list did not have) at once. */
const LOOKUPS_AT_ONCE = 10;

export type VmFindingKind = 'vm-destroyed' | 'vm-missing' | 'vm-failed' | 'unknown-vm' | 'image-mismatch' | 'owner-mismatch';

export type VmFix =
    | { op: 'forget'; instance: string }
    | { op: 'adopt'; vm: string; service_uuid: string; params: Record<string, string> }
    | { op: 'set-image'; instance: string; image_uuid: string };

export interface VmFinding {
    kind: VmFindingKind;
    /** The SAPI instance (absent for an unknown VM). */
    instance?: string;
    vm: string;
    service?: string;
    service_uuid?: string;
    server_uuid?: string;
    message: string;
    fix?: VmFix;
    /** What the operator can run when --fix does not handle it. */
    hint?: string;
}

export interface VmReport {
    instances: number;
    core_vms: number;
    owners: string[];
    findings: VmFinding[];
    drift: number;
    fixable: number;
}

const LABELS: Record<VmFindingKind, string> = {
    'vm-destroyed': 'VM destroyed',
    'vm-missing': 'VM missing',
    'vm-failed': 'VM failed',
    'unknown-vm': 'unknown to SAPI',
    'image-mismatch': 'image mismatch',
    'owner-mismatch': 'other owner',
};

interface VmCheckOpts {
    fix?: boolean;
    yes?: boolean;
    vmapiUrl?: string;
    owner?: string;
    concurrency: string;
}

export function defineVmCheck(cli: Cli, cmd: Command): void {
    cmd.command('vm-instances')
        .description("compare SAPI's vm instances with VMAPI's core VMs (admin VMs whose tags.smartdc_role names a SAPI service)")
        .option('--fix', 'after asking, make the SAPI records match VMAPI (records only: no VM is provisioned or destroyed)')
        .option('--yes', 'with --fix: do not ask (needed when stdin is not a terminal)')
        .option('--owner <UUID>', "the core VMs' owner (default: the owner_uuid of the applications of the vm services: the admin user)")
        .option('--concurrency <N>', 'VMs looked up one by one at once', String(LOOKUPS_AT_ONCE))
        .option('--vmapi-url <URL>', 'VMAPI (default: $VMAPI_URL)')
        .addHelpText(
            'after',
            `
Reports:
  VM destroyed    a SAPI instance whose VM VMAPI reports as destroyed
  VM missing      a SAPI instance VMAPI has no VM for
  VM failed       a SAPI instance whose VM is in state "failed" (not fixed:
                  \`sapiadm instances delete UUID\` destroys it and its record)
  unknown to SAPI a core VM (owned by the admin user, tags.smartdc_role naming
                  a SAPI vm service) without a SAPI instance
  image mismatch  params.image_uuid differs from the image the VM runs
  other owner     a SAPI instance whose VM belongs to another user (not fixed)

--fix changes SAPI records only: it forgets the records of destroyed and
missing VMs (each VM is looked up again first; in full mode SAPI's delete
finds the VM already gone and only removes the record), adopts unknown core
VMs with \`exists: true\` (their image, server and alias recorded from
VMAPI), and sets params.image_uuid to the image each VM runs. It never
provisions or destroys a VM. A record whose service has a teardown-hook
cannot be forgotten in full mode while the VM is gone; the error says so.

--fix asks first (y/N) on a terminal; elsewhere it needs --yes.

Exit status: 0 clean (or fixed), 3 drift remains (also when the question is
not answered y), 1 API error, 2 usage error (also: no VMAPI URL), or --fix
refused: no --yes and stdin is not a terminal.`,
        )
        .action(async (o: VmCheckOpts, c: Command) => {
            const vmapi = vmapiClient(cli, o.vmapiUrl);
            if (!vmapi) {
                throw new UsageError('this command needs VMAPI: give --vmapi-url URL or set VMAPI_URL');
            }
            const owner = o.owner === undefined ? undefined : mustUuid(o.owner, '--owner');
            const lookups = positiveInt(o.concurrency, '--concurrency');
            const api = cli.sapi(c);
            const json = cli.globals(c).json;
            await runCheck(cli, {
                json,
                fix: o.fix,
                yes: o.yes,
                gather: () => analyzeVms(api, vmapi, owner, lookups),
                print: (r) => printVmReport(cli, r),
                fixHint: 'Run `sapiadm check vm-instances --fix` to make the SAPI records match VMAPI.',
                nothingToFix: 'Nothing here that --fix can change; see the notes above.',
                question: (r) => `Change ${plural(r.fixable, 'SAPI record')} as listed (no VM is touched)?`,
                action: (r) => `change ${plural(r.fixable, 'SAPI record')}`,
                apply: async (before) => {
                    const actions: { fix: VmFix; ok: boolean; message: string }[] = [];
                    for (const f of before.findings) {
                        if (!f.fix) continue;
                        const r = await applyVmFix(api, vmapi, f, f.fix);
                        actions.push({ fix: f.fix, ...r });
                        if (!json) cli.out(`  ${r.ok ? 'done' : r.skipped ? 'skipped' : 'FAILED'}: ${r.message}`);
                    }
                    return actions;
                },
                other: 'VMAPI',
            });
        });
}

// ---- gathering

/** Every VM of a ListVms query, paged with limit and offset. */
async function listVms(vmapi: VmapiClient, query: Record<string, string>): Promise<VmapiVm[]> {
    const all: VmapiVm[] = [];
    for (let offset = 0; ; offset += VM_PAGE) {
        const res = await vmapi.http.get<VmapiVm[]>('/vms', { query: { ...query, limit: VM_PAGE, offset } });
        const page = Array.isArray(res.body) ? res.body : [];
        all.push(...page);
        if (page.length < VM_PAGE) return all;
    }
}

function roleOf(vm: VmapiVm): string | undefined {
    const tags = vm.tags;
    if (typeof tags !== 'object' || tags === null) return undefined;
    const role = (tags as Record<string, unknown>).smartdc_role;
    return typeof role === 'string' && role.length > 0 ? role : undefined;
}

export async function analyzeVms(api: SapiApi, vmapi: VmapiClient, ownerFlag: string | undefined, lookups: number): Promise<VmReport> {
    const [services, instances, apps] = await Promise.all([api.listServices({ type: 'vm' }), api.listInstances({ type: 'vm' }), api.listApplications()]);
    const appOwner = new Map(apps.map((a: Application) => [a.uuid, a.owner_uuid]));
    const svcByUuid = new Map(services.map((s) => [s.uuid, s]));
    const owners = ownerFlag
        ? [ownerFlag]
        : [...new Set(services.map((s) => appOwner.get(s.application_uuid)).filter((o): o is string => typeof o === 'string'))].sort();
    // Services by name, per owner (an unknown VM is adopted into its owner's service).
    const byName = new Map<string, Service[]>();
    for (const s of services) {
        const key = `${ownerFlag ?? appOwner.get(s.application_uuid) ?? ''}/${s.name}`;
        byName.set(key, [...(byName.get(key) ?? []), s]);
    }

    const listed = new Map<string, VmapiVm>();
    for (const owner of owners) {
        for (const vm of await listVms(vmapi, { owner_uuid: owner, state: 'active' })) {
            listed.set(vm.uuid, vm);
        }
    }
    const core = [...listed.values()].filter((vm) => {
        const role = roleOf(vm);
        return role !== undefined && byName.has(`${vm.owner_uuid ?? ''}/${role}`);
    });

    // Instances the list did not have: destroyed, failed, missing or another owner's.
    const vmOf = new Map<string, VmapiVm | null>();
    const unlisted = instances.filter((i) => !listed.has(i.uuid));
    await mapLimit(unlisted, lookups, async (i) => {
        vmOf.set(i.uuid, await vmapi.getVm(i.uuid));
    });

    const findings: VmFinding[] = [];
    const known = new Set(instances.map((i) => i.uuid));
    for (const inst of [...instances].sort((a, b) => a.uuid.localeCompare(b.uuid))) {
        const svc = svcByUuid.get(inst.service_uuid);
        const base = { instance: inst.uuid, vm: inst.uuid, service_uuid: inst.service_uuid, ...(svc ? { service: svc.name } : {}) };
        const what = `${svc?.name ?? 'vm'} instance ${inst.uuid}`;
        const vm = listed.get(inst.uuid) ?? vmOf.get(inst.uuid) ?? null;
        const server = vm?.server_uuid ?? (inst.params?.server_uuid as string | undefined);
        const where = server ? { server_uuid: server } : {};
        const found = (f: Pick<VmFinding, 'kind' | 'message' | 'fix' | 'hint'>): void => {
            findings.push({ ...base, ...where, ...f });
        };
        if (vm === null) {
            found({ kind: 'vm-missing', message: `${what}: VMAPI has no such VM`, fix: { op: 'forget', instance: inst.uuid } });
            continue;
        }
        if (vm.state === 'destroyed') {
            found({ kind: 'vm-destroyed', message: `${what}: the VM is destroyed`, fix: { op: 'forget', instance: inst.uuid } });
            continue;
        }
        if (vm.state === 'failed') {
            found({
                kind: 'vm-failed',
                message: `${what}: the VM is in state "failed"`,
                hint: `sapiadm instances delete ${inst.uuid}   (destroys the VM, then removes the record)`,
            });
            continue;
        }
        const expectedOwner = ownerFlag ?? (svc ? appOwner.get(svc.application_uuid) : undefined);
        if (expectedOwner && vm.owner_uuid && vm.owner_uuid !== expectedOwner) {
            found({ kind: 'owner-mismatch', message: `${what}: the VM belongs to ${vm.owner_uuid}, not ${expectedOwner}` });
            continue;
        }
        const recorded = inst.params?.image_uuid;
        if (typeof vm.image_uuid === 'string' && recorded !== vm.image_uuid) {
            found({
                kind: 'image-mismatch',
                message: `${what}: params.image_uuid is ${typeof recorded === 'string' ? recorded : 'not set'}, the VM runs ${vm.image_uuid}`,
                fix: { op: 'set-image', instance: inst.uuid, image_uuid: vm.image_uuid },
            });
        }
    }
    for (const vm of core.sort((a, b) => a.uuid.localeCompare(b.uuid))) {
        if (known.has(vm.uuid)) continue;
        const role = roleOf(vm) as string;
        const candidates = byName.get(`${vm.owner_uuid ?? ''}/${role}`) ?? [];
        const where = vm.server_uuid ? { server_uuid: vm.server_uuid } : {};
        const what = `VM ${vm.uuid}${vm.alias ? ` (${vm.alias})` : ''}, role ${role}`;
        if (candidates.length !== 1) {
            findings.push({
                ...where,
                kind: 'unknown-vm',
                vm: vm.uuid,
                service: role,
                message: `${what}: no SAPI instance; ${candidates.length} services are named "${role}"`,
                hint: `sapiadm instances create --exists --service <SERVICE UUID> --uuid ${vm.uuid}`,
            });
            continue;
        }
        const svc = candidates[0] as Service;
        const params: Record<string, string> = {};
        if (typeof vm.image_uuid === 'string') params.image_uuid = vm.image_uuid;
        if (typeof vm.server_uuid === 'string') params.server_uuid = vm.server_uuid;
        if (typeof vm.alias === 'string' && vm.alias) params.alias = vm.alias;
        findings.push({
            ...where,
            kind: 'unknown-vm',
            vm: vm.uuid,
            service: svc.name,
            service_uuid: svc.uuid,
            message: `${what}: no SAPI instance`,
            fix: { op: 'adopt', vm: vm.uuid, service_uuid: svc.uuid, params },
        });
    }
    return {
        instances: instances.length,
        core_vms: core.length,
        owners,
        findings,
        drift: findings.length,
        fixable: findings.filter((f) => f.fix).length,
    };
}

// ---- fixing

async function applyVmFix(api: SapiApi, vmapi: VmapiClient, f: VmFinding, fix: VmFix): Promise<{ ok: boolean; skipped?: boolean; message: string }> {
    try {
        switch (fix.op) {
            case 'forget': {
                // Looked up again: only a VM still gone lets its record go.
                const vm = await vmapi.getVm(fix.instance);
                if (vm !== null && vm.state !== 'destroyed') {
                    return { ok: false, skipped: true, message: `instance ${fix.instance} kept: its VM is now in state "${vm.state ?? '?'}"` };
                }
                await api.del(`/instances/${fix.instance}`);
                return { ok: true, message: `forgot ${f.service ?? 'vm'} instance ${fix.instance} (${vm === null ? 'no such VM' : 'VM destroyed'})` };
            }
            case 'adopt': {
                const inst = await api.post<Instance>('/instances', { service_uuid: fix.service_uuid, uuid: fix.vm, exists: true, params: fix.params });
                return { ok: true, message: `adopted VM ${inst.uuid} as a ${f.service ?? ''} instance (record only)` };
            }
            case 'set-image':
                await api.updateInstanceParams(fix.instance, { image_uuid: fix.image_uuid });
                return { ok: true, message: `set params.image_uuid of instance ${fix.instance} to ${fix.image_uuid}` };
        }
    } catch (err) {
        return { ok: false, message: `${fix.op} ${'instance' in fix ? fix.instance : fix.vm}: ${describeError(err)}` };
    }
}

// ---- the readable report

export function printVmReport(cli: Cli, r: VmReport): void {
    const width = Math.max(...Object.values(LABELS).map((l) => l.length)) + 2;
    for (const f of r.findings) {
        cli.out(`${LABELS[f.kind].padEnd(width)}${f.message}${f.server_uuid ? ` on server ${f.server_uuid}` : ''}`);
        if (f.hint) cli.out(`${''.padEnd(width)}${f.fix ? 'or: ' : 'fix: '}${f.hint}`);
    }
    if (r.findings.length > 0) cli.out('');
    const owners = r.owners.length === 0 ? 'no vm services' : `owner ${r.owners.join(', ')}`;
    cli.out(
        r.drift === 0
            ? `OK: ${plural(r.instances, 'vm instance')} and ${plural(r.core_vms, 'core VM')} (${owners}) agree.`
            : `${plural(r.drift, 'issue')} (${plural(r.instances, 'vm instance')}, ${plural(r.core_vms, 'core VM')}, ${owners}; ${r.fixable} fixable with --fix).`,
    );
}
