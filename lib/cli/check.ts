// sapiadm check server-agents: report agent drift between SAPI and CNAPI
// server.agents and, with --fix, make SAPI's records match the servers:
// refresh server.agents first (it may be stale), re-read, then record, forget or
// update instances (records only; nothing is installed or removed).
// Refreshes run a bounded number at a time, each with its own time limit: a
// server whose refresh does not finish in time is named and goes on stale,
// and never holds up the others or the command. (check vm-instances is in
// check-vm.ts.)

import { setTimeout as sleep } from 'node:timers/promises';

import type { Command } from 'commander';

import type { CnapiClient, CnapiServer } from '../clients/cnapi.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import type { Instance } from '../model/types.js';
import type { Rollout } from '../rollout/types.js';
import { mustUuid, positiveInt } from './args.js';
import { runCheck } from './check-flow.js';
import { mapLimit, type Cli } from './common.js';
import { cnapiClient, imgapiClient } from './downstream.js';
import { defineVmCheck } from './check-vm.js';
import { analyzeDrift, LABELS, type DriftReport, type Finding, type Fix } from './drift.js';
import { describeError } from './errors.js';
import type { SapiApi } from './sapi-api.js';
import { plural } from './table.js';

interface CheckOpts {
    fix?: boolean;
    yes?: boolean;
    cnapiUrl?: string;
    imgapiUrl?: string;
    concurrency: string;
    timeout: string;
}

/** How --fix refreshes server.agents. */
interface RefreshLimits {
    /** Servers refreshed at once. */
    concurrency: number;
    /** Per server: the refresh request and its task, together. */
    timeoutMs: number;
}

const DEFAULT_REFRESH_CONCURRENCY = 20;
const DEFAULT_REFRESH_TIMEOUT_S = 60;

interface ActionResult {
    fix: Fix;
    ok: boolean;
    message: string;
}

export function define(cli: Cli, cmd: Command): void {
    cmd.command('server-agents')
        .description("compare SAPI's agent instances with CNAPI server.agents and the agent services' images")
        .argument('[SERVER...]', 'server UUIDs (default: servers with agent instances in SAPI or set up in CNAPI)')
        .option('--fix', 'after asking, refresh server.agents and make the SAPI records match the servers')
        .option('--yes', 'with --fix: do not ask (needed when stdin is not a terminal)')
        .option('--concurrency <N>', 'with --fix: servers whose server.agents are refreshed at once', String(DEFAULT_REFRESH_CONCURRENCY))
        .option('--timeout <SECONDS>', "with --fix: give up on one server's refresh after this long (it goes on stale)", String(DEFAULT_REFRESH_TIMEOUT_S))
        .option('--cnapi-url <URL>', 'CNAPI (default: $CNAPI_URL)')
        .option('--imgapi-url <URL>', "IMGAPI, for the versions of the services' images (default: $IMGAPI_URL; else the versions server.agents reports)")
        .addHelpText(
            'after',
            `
Left over from SAPI 2.1.2, and reported as such:
  unplaced    agent instances without params.server_uuid (agents that
              registered before they reported their server). \`sapiadm
              migrate\` fills params.server_uuid from the server whose
              server.agents has the instance's uuid.
  duplicates  several instances of one agent service on one server. The
              agent's next adoption replaces them with its own instance.

--fix makes SAPI's records match the servers (nothing is removed from a
server): it records agents found on a server (as the agent's own
postinstall would; for an unplaced instance that sets its server), forgets
records of agents a server does not have and of servers CNAPI no longer
knows or reports as not set up, keeps the one of duplicate instances that
server.agents reports and forgets the others, and sets params.image_uuid to
what the server runs. Then it installs the missing agents (agent services a
running server with cn-agent has neither in SAPI nor in server.agents) with
one plan, as \`sapiadm server setup-agents\` does, and waits for it.
Outdated agents need a rollout; the report prints the command.

Versions, not image uuids, say which way an agent is off: the version
server.agents reports for the agent against the version of the image the
service names (IMGAPI's, or what server.agents reports for that image
elsewhere; semver, a build stamp ordering builds of one version). An agent
newer than that is reported "newer", never "outdated": a rollout skips it
and --fix leaves it (nothing is ever downgraded here). Either make the
service name its image (\`sapiadm services update\`) or go back on purpose
with \`sapiadm rollout ... --allow-downgrade\`; the report prints both.

--fix asks first (y/N) on a terminal; elsewhere it needs --yes.

Exit status: 0 clean (or fixed), 3 drift remains (also when the question is
not answered y), 1 API error, 2 usage error, or --fix refused: no --yes and
stdin is not a terminal.`,
        )
        .action(async (servers: string[], o: CheckOpts, c: Command) => {
            const only = servers.length > 0 ? servers.map((s) => mustUuid(s, 'SERVER')) : undefined;
            const limits: RefreshLimits = {
                concurrency: positiveInt(o.concurrency, '--concurrency'),
                timeoutMs: positiveInt(o.timeout, '--timeout') * 1000,
            };
            const cnapi = cnapiClient(cli, o.cnapiUrl);
            const imgapi = imgapiClient(cli, o.imgapiUrl);
            const api = cli.sapi(c);
            const json = cli.globals(c).json;
            const gather = async (): Promise<DriftReport> => analyze(api, cnapi, imgapi, only);
            await runCheck(cli, {
                json,
                fix: o.fix,
                yes: o.yes,
                gather,
                print: (r) => printReport(cli, r),
                fixHint: 'Run `sapiadm check server-agents --fix` to make the SAPI records match the servers.',
                nothingToFix: 'Nothing here that --fix can change; see the commands above.',
                question: (r) => `Refresh server.agents and change ${plural(r.fixable, 'SAPI record')} as listed?`,
                action: (r) => `refresh server.agents and change ${plural(r.fixable, 'SAPI record')}`,
                apply: async (before) => {
                    await refresh(cli, cnapi, before, json, limits);
                    const plan = await gather();
                    const results: ActionResult[] = [];
                    let recorded = 0;
                    for (const f of [...plan.general, ...plan.servers.flatMap((s) => s.findings)]) {
                        if (f.fix && f.fix.op !== 'install') {
                            const r = await apply(api, f.fix);
                            results.push(r);
                            recorded += 1;
                            if (!json) cli.out(`  ${r.ok ? 'done' : 'FAILED'}: ${r.message}`);
                        }
                    }
                    // Missing agents, once the records are right (a record of an
                    // agent its server lacks, just forgotten, is one): one plan.
                    const now = recorded > 0 ? await gather() : plan;
                    const installs = [...now.general, ...now.servers.flatMap((s) => s.findings)]
                        .map((f) => f.fix)
                        .filter((fix): fix is InstallFix => fix?.op === 'install');
                    for (const r of await installMissing(cli, api, installs, json)) {
                        results.push(r);
                        if (!json) cli.out(`  ${r.ok ? 'done' : 'FAILED'}: ${r.message}`);
                    }
                    return results;
                },
                other: 'CNAPI',
            });
        });
    defineVmCheck(cli, cmd);
}

async function analyze(api: SapiApi, cnapi: CnapiClient, imgapi: ImgapiClient | undefined, only: string[] | undefined): Promise<DriftReport> {
    const [services, instances, servers] = await Promise.all([
        api.listServices({ type: 'agent' }),
        api.listInstances({ type: 'agent' }),
        cnapi.listServers(only ? { uuids: only, extras: 'agents' } : { extras: 'agents' }),
    ]);
    const versions = await imageVersions(servers, services, imgapi);
    return analyzeDrift(only ? { services, instances, servers, only, versions } : { services, instances, servers, versions });
}

/** IMGAPI lookups at once. */
const IMAGE_LOOKUPS_AT_ONCE = 10;

/**
 * Image uuid → version. The services' images: IMGAPI's version when IMGAPI
 * is given and has the image; the others, and every image without IMGAPI:
 * the version server.agents entries report with that image (IMGAPI is
 * asked only for those that report none). An image no one gives a version
 * for is compared by uuid alone.
 */
async function imageVersions(
    servers: CnapiServer[],
    services: { params?: Record<string, unknown> }[],
    imgapi: ImgapiClient | undefined,
): Promise<Map<string, string>> {
    const versions = new Map<string, string>();
    const agentImages = new Set<string>();
    for (const s of servers) {
        for (const a of Array.isArray(s.agents) ? s.agents : []) {
            if (!a.image_uuid) continue;
            agentImages.add(a.image_uuid);
            if (a.version && !versions.has(a.image_uuid)) versions.set(a.image_uuid, a.version);
        }
    }
    if (imgapi) {
        const targets = services.map((svc) => svc.params?.image_uuid).filter((img): img is string => typeof img === 'string');
        const ask = new Set([...targets, ...[...agentImages].filter((img) => !versions.has(img))]);
        await mapLimit([...ask], IMAGE_LOOKUPS_AT_ONCE, async (img) => {
            const found = await imgapi.getImage(img).catch(() => null);
            if (found?.version) versions.set(img, found.version);
        });
    }
    return versions;
}

/**
 * CNAPI refresh-agents for the servers --fix will touch (a 404 means this
 * CNAPI has no such route): `limits.concurrency` at a time, each given up
 * after `limits.timeoutMs`. Progress goes to stderr, so --json's stdout
 * stays one document.
 */
async function refresh(cli: Cli, cnapi: CnapiClient, report: DriftReport, json: boolean, limits: RefreshLimits): Promise<void> {
    const say = (m: string): void => (json ? cli.warn(m) : cli.out(`  ${m}`));
    const targets = report.servers.filter((s) => s.state === 'setup' && s.findings.some((f) => f.fix)).map((s) => s.uuid);
    let unsupported = false;
    let done = 0;
    let failed = 0;
    const progress = (): void => {
        if (done % limits.concurrency === 0 || done === targets.length) {
            cli.warn(`server.agents refresh: ${done}/${plural(targets.length, 'server')} done${failed > 0 ? `, ${failed} failed` : ''}`);
        }
    };
    const one = async (server: string): Promise<void> => {
        try {
            const task = await withDeadline(limits.timeoutMs, async (signal) => {
                const t = await cnapi.refreshAgents(server);
                if (t) {
                    await cnapi.pollTask(t.id, { server, intervalMs: 250, deadlineMs: limits.timeoutMs, notFoundGraceMs: 10_000, signal });
                }
                return t;
            });
            if (task) {
                say(`refreshed server.agents of ${server}`);
            } else {
                unsupported = true;
            }
        } catch (err) {
            failed += 1;
            const why = err instanceof RefreshTimeout ? `timed out after ${limits.timeoutMs / 1000}s (--timeout)` : describeError(err);
            say(`warning: could not refresh server.agents of ${server}: ${why}; it may be stale`);
        }
        done += 1;
        progress();
    };
    await mapLimit(targets, limits.concurrency, one);
    if (unsupported) {
        say(
            'warning: this CNAPI is too old to refresh server.agents on request (it has no refresh-agents route): server.agents may be stale; going on with it as is',
        );
    }
}

class RefreshTimeout extends Error {}

/**
 * `work`, or a RefreshTimeout once `ms` have passed, whichever comes
 * first; the signal given to `work` is aborted then, so what heeds it stops.
 */
async function withDeadline<T>(ms: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
            const err = new RefreshTimeout(`timed out after ${ms / 1000}s`);
            ac.abort(err);
            reject(err);
        }, ms);
    });
    try {
        return await Promise.race([work(ac.signal), late]);
    } finally {
        clearTimeout(timer);
    }
}

type InstallFix = Extract<Fix, { op: 'install' }>;

/** Between polls of the installing plan. */
const INSTALL_POLL_MS = 1000;

/**
 * Install missing agents with one plan (POST /rollouts, install_missing,
 * the missing services on their servers), and wait for it to end or pause:
 * each fix is done when its item succeeded.
 */
async function installMissing(cli: Cli, api: SapiApi, fixes: InstallFix[], json: boolean): Promise<ActionResult[]> {
    if (fixes.length === 0) {
        return [];
    }
    const say = (m: string): void => (json ? cli.warn(m) : cli.out(`  ${m}`));
    // Only a SAPI in full mode deploys agents (in proto mode it only records).
    const mode = (await api.http.get<string>('/mode')).body;
    if (mode !== 'full') {
        say(`${plural(fixes.length, 'missing agent')} not installed: SAPI is in ${mode} mode, where it records agents but installs none`);
        return [];
    }
    const services = [...new Set(fixes.map((f) => f.service_uuid))].map((service_uuid) => ({ service_uuid }));
    const servers = [...new Set(fixes.map((f) => f.server_uuid))];
    let r: Rollout;
    try {
        r = await api.post<Rollout>('/rollouts', { services, servers, install_missing: true });
    } catch (err) {
        return fixes.map((fix) => ({ fix, ok: false, message: `install ${fix.service} on ${fix.server_uuid}: ${describeError(err)}` }));
    }
    say(`installing ${plural(fixes.length, 'missing agent')} with rollout ${r.uuid} (sapiadm rollout status ${r.uuid} --watch)`);
    while (r.state === 'running' || r.state === 'reverting') {
        await sleep(INSTALL_POLL_MS);
        r = await api.getRollout(r.uuid);
    }
    return fixes.map((fix) => {
        const item = r.items.find((i) => i.server_uuid === fix.server_uuid && i.service_uuid === fix.service_uuid && i.action === 'install');
        const ok = item?.state === 'succeeded';
        const why = item ? `${item.state}${item.error ? `: ${item.error}` : ''}` : 'not in the plan';
        return {
            fix,
            ok,
            message: `${ok ? 'installed' : 'could not install'} ${fix.service} on server ${fix.server_uuid}${ok ? '' : ` (${why}; rollout ${r.uuid})`}`,
        };
    });
}

async function apply(api: SapiApi, fix: Fix): Promise<ActionResult> {
    let message: string;
    try {
        switch (fix.op) {
            case 'install':
                throw new Error('installs run as one plan (installMissing)');
            case 'adopt': {
                const body: Record<string, unknown> = { service_uuid: fix.service_uuid, params: { server_uuid: fix.server_uuid } };
                if (fix.uuid) body.uuid = fix.uuid;
                if (fix.image_uuid) (body.params as Record<string, unknown>).image_uuid = fix.image_uuid;
                const inst = await api.post<Instance>('/instances', body, { v1: true });
                message = `recorded ${fix.service} instance ${inst.uuid} on server ${fix.server_uuid}`;
                break;
            }
            case 'forget':
                await api.del(`/instances/${fix.instance}`, { v1: true });
                message = `forgot ${fix.service} instance ${fix.instance} (not on server ${fix.server_uuid})`;
                break;
            case 'forget-server': {
                const res = await api.del<{ deleted: string[] }>(`/servers/${fix.server_uuid}/instances`);
                message = `forgot ${plural(res.deleted.length, 'agent instance')} of server ${fix.server_uuid}`;
                break;
            }
            case 'set-image':
                await api.updateInstanceParams(fix.instance, { image_uuid: fix.image_uuid });
                message = `set image of instance ${fix.instance} to ${fix.image_uuid}`;
                break;
            case 'forget-duplicates':
                for (const uuid of fix.instances) {
                    await api.del(`/instances/${uuid}`, { v1: true });
                }
                message =
                    `forgot duplicate ${fix.service} ${fix.instances.length === 1 ? 'instance' : 'instances'} ${fix.instances.join(', ')}` +
                    ` on server ${fix.server_uuid}; kept ${fix.keep}, the one server.agents reports`;
                break;
        }
        return { fix, ok: true, message };
    } catch (err) {
        return { fix, ok: false, message: `${fix.op} ${JSON.stringify(fix)}: ${describeError(err)}` };
    }
}

// ---- the readable report

export function printReport(cli: Cli, r: DriftReport): void {
    const width = Math.max(...Object.values(LABELS).map((l) => l.length)) + 2;
    const block = (title: string, findings: Finding[]): void => {
        cli.out(title);
        for (const f of findings) {
            cli.out(`  ${(f.note ? `(${LABELS[f.kind]})` : LABELS[f.kind]).padEnd(width)}${f.message}`);
            for (const c of f.commands) {
                cli.out(`  ${''.padEnd(width)}${c.startsWith('or ') ? '' : 'fix: '}${c}`);
            }
        }
        cli.out('');
    };
    for (const s of r.servers) {
        if (s.findings.length === 0) continue;
        const state = s.state === 'gone' ? 'unknown to CNAPI' : s.state === 'not-setup' ? `${s.hostname ?? '?'}, not set up` : (s.hostname ?? '?');
        block(`server ${s.uuid} (${state})`, s.findings);
    }
    if (r.general.length > 0) {
        block('services and instances', r.general);
    }
    outdatedSummary(cli, r);
    leftoverSummary(cli, r);
    const clean = r.servers.filter((s) => s.findings.every((f) => f.note)).length;
    const drifted = new Set(r.servers.filter((s) => s.findings.some((f) => !f.note)).map((s) => s.uuid)).size;
    cli.out(
        r.drift === 0
            ? `OK: ${plural(r.servers.length, 'server')} checked, SAPI agent instances match CNAPI server.agents.`
            : `${plural(r.drift, 'issue')}${drifted > 0 ? ` on ${plural(drifted, 'server')}` : ''}` +
                  ` (${clean} of ${plural(r.servers.length, 'server')} clean, ${r.fixable} fixable with --fix).`,
    );
}

/** What SAPI 2.1.2 left behind, in two lines (the findings above list each case). */
function leftoverSummary(cli: Cli, r: DriftReport): void {
    if (r.unplaced.length > 0) {
        const found = r.unplaced.filter((u) => u.server_uuid).length;
        cli.out(
            `unplaced: ${plural(r.unplaced.length, 'agent instance')} without params.server_uuid (${found} found in a server's server.agents);` +
                ' `sapiadm migrate --cnapi-url URL` fills params.server_uuid from CNAPI server.agents',
        );
    }
    if (r.duplicates.length > 0) {
        const extra = r.duplicates.reduce((n, d) => n + d.instances.length - 1, 0);
        cli.out(
            `duplicates: ${plural(extra, 'extra agent instance')} in ${plural(r.duplicates.length, 'group')} of one agent on one server;` +
                " each agent's next adoption replaces them, --fix forgets them now (keeping the one server.agents reports)",
        );
    }
    if (r.unplaced.length > 0 || r.duplicates.length > 0) {
        cli.out('');
    }
}

/** One rollout command per (service, image) covering every outdated server. */
function outdatedSummary(cli: Cli, r: DriftReport): void {
    const groups = new Map<string, string[]>();
    for (const f of r.servers.flatMap((s) => s.findings)) {
        if (f.kind === 'outdated' && f.commands[0]) {
            const key = f.commands[0].replace(/ --servers \S+$/, '');
            groups.set(key, [...(groups.get(key) ?? []), f.server_uuid ?? '']);
        }
    }
    if (groups.size === 0) return;
    cli.out('to upgrade outdated agents:');
    for (const [cmd, servers] of groups) {
        cli.out(`  ${cmd} --servers ${servers.join(',')}`);
    }
    cli.out('');
}
