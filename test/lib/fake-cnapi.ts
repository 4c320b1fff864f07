// Fake CNAPI (+ the cn-agent behind it): the server and task routes SAPI
// uses, with cn-agent's per-server serial task queue, agent
// install/uninstall/refresh and, optionally, the agent's SAPI
// self-adoption during an install (its postinstall's POST /instances).

import { randomUUID } from 'node:crypto';

import semver from 'semver';

import type { CnapiAgent, CnapiServer, CnapiTask } from '../../lib/clients/cnapi.js';
import { FakeHttpError, FakeHttpServer, UUID_RE, clone, isoNow, rawRequest, type FakeLog, type FakeRequest, type FakeResponse } from './fake-http.js';

// ---- types

/** What the fake "CN" needs to know about an image. */
export interface FakeImage {
    name?: string;
    version?: string;
}

/** A CNAPI task, plus what the fake keeps about it. */
export interface FakeTaskLogEntry {
    id: string;
    task: string;
    server_uuid: string;
    params: Record<string, unknown>;
    /** What the fake did with it. */
    plan: 'run' | 'fail' | 'hang' | 'drop';
}

export interface AdoptionAttempt {
    server_uuid: string;
    agent: string;
    uuid: string;
    attempt: number;
    ok: boolean;
    status?: number;
    error?: string;
}

export interface FakeCnapiState {
    /** CNAPI's server records; `agents` is CNAPI's cache of what is installed. */
    servers: Map<string, CnapiServer>;
    /** Task records as GET /tasks/:id returns them. */
    tasks: Map<string, CnapiTask>;
    /** What is really on each CN (cn-agent's view); refreshes copy it into `server.agents`. */
    nodeAgents: Map<string, CnapiAgent[]>;
    /** Image lookup used before the linked IMGAPI. */
    images: Map<string, FakeImage>;
    /** Moray connected (else 500 "Precondition failed: no connection moray"). */
    moray: boolean;
    /** Workflow connected (DELETE server, factory-reset). */
    workflow: boolean;
    taskLog: FakeTaskLogEntry[];
    executions: { server_uuid: string; script: string; args?: unknown }[];
    adoptions: AdoptionAttempt[];
    factoryResets: { server_uuid: string; job_uuid: string }[];
}

export type ImageLookup = (uuid: string) => FakeImage | undefined | Promise<FakeImage | undefined>;

export interface FakeCnapiOptions {
    log?: FakeLog;
    /** Servers to add (see addServer for defaults). */
    servers?: Partial<CnapiServer>[];
    /** Time a task takes once it runs. Default 50 ms. */
    taskDurationMs?: number;
    /** Where the CN fetches image manifests: a (fake) IMGAPI `{url}` or a lookup function. */
    imgapi?: { url: string } | ImageLookup;
    /** Images known without IMGAPI: uuid → {name, version}. */
    images?: Record<string, FakeImage>;
    /** Agents installed without an instance uuid file (no `uuid` in server.agents, no adoption). */
    noUuidFile?: boolean;
    /** SAPI the "CN" adopts agents into (needs adoptDuringInstall). */
    sapiUrl?: string;
    adoptDuringInstall?: boolean;
    /** Adoption tries (10) and the pause between them (50 ms; 5 s on a real CN). */
    adoptTries?: number;
    adoptIntervalMs?: number;
    /** cn-agent self-update: server.agents changes this long after the task completed. Default 100 ms. */
    cnAgentUpdateDelayMs?: number;
    /** Whether POST /servers/:uuid/refresh-agents exists: no CNAPI has it yet (a future one may). Default false. */
    refreshAgents?: boolean;
    /** Answer for POST /servers/:uuid/execute: stdout, or throw FakeHttpError. Default ''. */
    execute?: (server: CnapiServer, body: { script?: string; args?: unknown }) => string;
    /** `Server: cnapi/<version>`. Default 1.26.4. */
    version?: string;
    /**
     * The uuid a CN gives an agent it installs for the first time (its
     * uuid file). Default: a random one; a world that must answer the same
     * on every run gives its own.
     */
    newAgentUuid?: (serverUuid: string, agent: string) => string;
}

type TaskPlan = { kind: 'fail'; message: string } | { kind: 'hang' } | { kind: 'drop' };

class TaskFailure extends Error {}

const LIST_KEYS = new Set(['uuids', 'setup', 'headnode', 'reserved', 'reservoir', 'hostname', 'extras', 'fields', 'limit', 'offset']);
const EXTRAS = new Set(['agents', 'vms', 'memory', 'disk', 'sysinfo', 'capacity', 'all']);

let hostSeq = 0;

// ---- the fake

export class FakeCnapi extends FakeHttpServer {
    readonly state: FakeCnapiState = {
        servers: new Map(),
        tasks: new Map(),
        nodeAgents: new Map(),
        images: new Map(),
        moray: true,
        workflow: true,
        taskLog: [],
        executions: [],
        adoptions: [],
        factoryResets: [],
    };
    taskDurationMs: number;
    noUuidFile: boolean;
    sapiUrl: string | undefined;
    adoptDuringInstall: boolean;
    adoptTries: number;
    adoptIntervalMs: number;
    cnAgentUpdateDelayMs: number;
    refreshAgentsEnabled: boolean;
    imgapi: { url: string } | ImageLookup | undefined;
    executeHandler: ((server: CnapiServer, body: { script?: string; args?: unknown }) => string) | undefined;
    newAgentUuid: (serverUuid: string, agent: string) => string;

    private readonly plans: TaskPlan[] = [];
    /** Plans for the next task on one server (taken before the global ones). */
    private readonly serverPlans = new Map<string, TaskPlan[]>();
    private readonly queues = new Map<string, Promise<void>>();
    /** Hung tasks, each waiting for its release (with the plan it goes on with). */
    private readonly hung: ((then: TaskPlan | undefined) => void)[] = [];

    constructor(opts: FakeCnapiOptions = {}) {
        super({ name: 'CNAPI', headers: { server: `cnapi/${opts.version ?? '1.26.4'}` }, log: opts.log });
        this.taskDurationMs = opts.taskDurationMs ?? 50;
        this.noUuidFile = opts.noUuidFile ?? false;
        this.sapiUrl = opts.sapiUrl;
        this.adoptDuringInstall = opts.adoptDuringInstall ?? false;
        this.adoptTries = opts.adoptTries ?? 10;
        this.adoptIntervalMs = opts.adoptIntervalMs ?? 50;
        this.cnAgentUpdateDelayMs = opts.cnAgentUpdateDelayMs ?? 100;
        this.refreshAgentsEnabled = opts.refreshAgents ?? false;
        this.imgapi = opts.imgapi;
        this.executeHandler = opts.execute;
        this.newAgentUuid = opts.newAgentUuid ?? (() => randomUUID());
        for (const [uuid, img] of Object.entries(opts.images ?? {})) {
            this.state.images.set(uuid, img);
        }
        for (const s of opts.servers ?? []) {
            this.addServer(s);
        }
        this.mountRoutes();
    }

    // ---- helpers for tests

    /**
     * Adds a server record. Defaults: running, setup, not headnode, and a
     * cn-agent 2.13.0 in `agents` (unless `agents` is given). The CN's real
     * agents start equal to `agents`.
     */
    addServer(s: Partial<CnapiServer> = {}): CnapiServer {
        const uuid = s.uuid ?? randomUUID();
        hostSeq += 1;
        const agents: CnapiAgent[] = s.agents ?? [{ name: 'cn-agent', version: '2.13.0', image_uuid: randomUUID(), uuid: randomUUID() }];
        const hostname = s.hostname ?? `cn${hostSeq}`;
        const server: CnapiServer = {
            uuid,
            hostname,
            datacenter: 'coal',
            status: 'running',
            setup: true,
            headnode: false,
            reserved: false,
            reservoir: false,
            current_platform: '20210826T002459Z',
            boot_platform: '20210826T002459Z',
            last_heartbeat: isoNow(),
            memory_total_bytes: 68_719_476_736,
            memory_available_bytes: 60_000_000_000,
            disk_pool_size_bytes: 1_000_000_000_000,
            unreserved_cpu: 3200,
            unreserved_ram: 60_000,
            unreserved_disk: 900_000,
            vms: {},
            sysinfo: {
                UUID: uuid,
                Hostname: hostname,
                'Admin IP': '10.99.99.40',
                'SDC Agents': agents.map((a) => ({ name: a.name, version: a.version })),
            },
            ...s,
            agents,
        };
        this.state.servers.set(uuid, server);
        this.state.nodeAgents.set(uuid, clone(agents));
        return server;
    }

    /** Sets what is really installed on a CN without telling CNAPI (drift). */
    setNodeAgents(serverUuid: string, agents: CnapiAgent[]): void {
        this.state.nodeAgents.set(serverUuid, clone(agents));
    }

    /** The next `count` tasks fail with `message` (as CNAPI records it: history[0].event.error.message). */
    failNextTask(message: string, count = 1): void {
        for (let i = 0; i < count; i++) this.plans.push({ kind: 'fail', message });
    }

    /** The next task on this server fails with `message` (or hangs with 'hang'). */
    planTaskOn(serverUuid: string, plan: { fail: string } | 'hang'): void {
        const list = this.serverPlans.get(serverUuid) ?? [];
        list.push(plan === 'hang' ? { kind: 'hang' } : { kind: 'fail', message: plan.fail });
        this.serverPlans.set(serverUuid, list);
    }

    /** The next `count` tasks stay `active` (and block their server's queue) until releaseHungTasks(). */
    hangNextTask(count = 1): void {
        for (let i = 0; i < count; i++) this.plans.push({ kind: 'hang' });
    }

    /** Hung tasks go on now: they run as usual, or fail with `fail` when given. */
    releaseHungTasks(plan: { fail?: string } = {}): void {
        for (const release of this.hung.splice(0)) {
            release(plan.fail === undefined ? undefined : { kind: 'fail', message: plan.fail });
        }
    }

    /** The next `count` tasks are never written: 200 {id}, then GET /tasks/:id is 404 forever. */
    dropNextTask(count = 1): void {
        for (let i = 0; i < count; i++) this.plans.push({ kind: 'drop' });
    }

    agentsOf(serverUuid: string): CnapiAgent[] {
        return this.state.servers.get(serverUuid)?.agents ?? [];
    }

    /** Resolves when every queued task of every server is done (hung ones excepted: don't). */
    async idle(): Promise<void> {
        await Promise.all([...this.queues.values()]);
    }

    override async close(): Promise<void> {
        await super.close();
        this.plans.length = 0;
    }

    // ---- routes

    private mountRoutes(): void {
        this.route('GET', '/ping', () => ({
            status: 200,
            body: {
                ready: this.state.moray && this.state.workflow,
                services: {
                    workflow: this.state.workflow ? 'online' : 'offline',
                    moray: this.state.moray ? 'online' : 'offline',
                    amqp: 'online',
                },
            },
        }));
        this.route('GET', '/servers', (req) => this.listServers(req));
        this.route('GET', '/servers/:uuid', (req) => {
            const s = this.ensure(req, {});
            return { status: 200, body: clone(s) };
        });
        this.route('POST', '/servers/:uuid', (req) => this.updateServer(req));
        this.route('DELETE', '/servers/:uuid', (req) => this.deleteServer(req));
        this.route('POST', '/servers/:uuid/install-agent', (req) => {
            const s = this.ensure(req, { running: true });
            const params = { ...bodyObject(req.body), ...req.query, server_uuid: s.uuid };
            return { status: 200, body: { id: this.startTask(s, 'agent_install', params, req) } };
        });
        this.route('POST', '/servers/:uuid/uninstall-agents', (req) => this.uninstallAgents(req));
        this.route('POST', '/servers/:uuid/refresh-agents', (req) => {
            if (!this.refreshAgentsEnabled) {
                return this.notFoundPath(req.path);
            }
            const s = this.ensure(req, { running: true });
            return { status: 200, body: { id: this.startTask(s, 'refresh_agents', {}, req) } };
        });
        this.route('POST', '/servers/:uuid/execute', (req) => {
            const s = this.ensure(req, { running: true });
            const body = bodyObject(req.body) as { script?: string; args?: unknown };
            const entry: FakeCnapiState['executions'][number] = { server_uuid: s.uuid, script: String(body.script ?? '') };
            if (body.args !== undefined) entry.args = body.args;
            this.state.executions.push(entry);
            const stdout = this.executeHandler ? this.executeHandler(s, body) : '';
            return { status: 200, body: stdout };
        });
        this.route('PUT', '/servers/:uuid/factory-reset', (req) => this.factoryReset(req));
        this.route('GET', '/tasks/:id', (req) => {
            const task = this.state.tasks.get(req.params['id'] ?? '');
            if (!task) {
                throw new FakeHttpError(404, 'ResourceNotFound', 'no such task found');
            }
            return { status: 200, body: clone(task) };
        });
    }

    /** CNAPI's ensure handlers for /servers/:uuid routes, in order: moray, server, workflow, serverRunning. */
    private ensure(req: FakeRequest, needs: { workflow?: boolean; running?: boolean }): CnapiServer {
        if (!this.state.moray) {
            throw new FakeHttpError(500, 'InternalError', 'Precondition failed: no connection moray');
        }
        const uuid = req.params['uuid'] ?? '';
        if (!UUID_RE.test(uuid) && uuid !== 'default') {
            throw new FakeHttpError(409, 'InvalidArgument', 'Invalid server_uuid');
        }
        const server = this.state.servers.get(uuid);
        if (!server) {
            throw new FakeHttpError(404, 'ResourceNotFound', `Server ${uuid} not found`);
        }
        if (needs.workflow && !this.state.workflow) {
            throw new FakeHttpError(500, 'InternalError', 'Precondition failed: no connection to Workflow API');
        }
        if (needs.running && server.status !== 'running') {
            throw new FakeHttpError(409, 'ServerNotRunning', 'Operation attempted on server which is not running');
        }
        return server;
    }

    private strictParams(req: FakeRequest, allowed: string[]): void {
        const keys = [...Object.keys(req.query), ...Object.keys(bodyObject(req.body))];
        for (const k of keys) {
            if (k !== 'server_uuid' && !allowed.includes(k)) {
                throw new FakeHttpError(409, 'InvalidArgument', `${k} is not an explicitly defined parameter`);
            }
        }
    }

    private listServers(req: FakeRequest): FakeResponse {
        if (!this.state.moray) {
            throw new FakeHttpError(500, 'InternalError', 'Precondition failed: no connection moray');
        }
        for (const k of Object.keys(req.query)) {
            if (!LIST_KEYS.has(k)) {
                throw new FakeHttpError(409, 'InvalidArgument', `${k} is not an explicitly defined parameter`);
            }
        }
        const q = req.query;
        const limit = q['limit'] === undefined ? 1000 : Number(q['limit']);
        const offset = q['offset'] === undefined ? 0 : Number(q['offset']);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
            throw invalidParameters('limit', 'limit must be a number between 1 and 1000');
        }
        if (!Number.isInteger(offset) || offset < 0) {
            throw invalidParameters('offset', 'offset must be a non-negative number');
        }
        const extras = new Set((q['extras'] ?? '').split(',').filter((e) => e.length > 0));
        for (const e of extras) {
            if (!EXTRAS.has(e)) {
                throw invalidParameters('extras', `invalid extra: ${e}`);
            }
        }
        const uuids = q['uuids'] === undefined ? undefined : new Set(q['uuids'].split(',').filter((u) => u.length > 0));
        let list = [...this.state.servers.values()].filter((s) => {
            if (uuids && !uuids.has(s.uuid)) return false;
            for (const key of ['setup', 'headnode', 'reserved', 'reservoir'] as const) {
                if (q[key] !== undefined && String(s[key] === true) !== q[key]) return false;
            }
            if (q['hostname'] !== undefined && s.hostname !== q['hostname']) return false;
            return true;
        });
        list = list.slice(offset, offset + limit);
        const all = extras.has('all');
        const fields = q['fields'] === undefined ? undefined : q['fields'].split(',').filter((f) => f.length > 0);
        const body = list.map((s) => {
            const out: Record<string, unknown> = {};
            for (const [k, v] of Object.entries(clone(s))) {
                const group = extraGroup(k);
                if (group === 'base' || all || extras.has(group) || (group === 'status' && extras.size > 0)) {
                    out[k] = v;
                }
            }
            if (fields) {
                for (const k of Object.keys(out)) {
                    if (!fields.includes(k)) delete out[k];
                }
            }
            return out;
        });
        return { status: 200, body };
    }

    private updateServer(req: FakeRequest): FakeResponse {
        const s = this.ensure(req, {});
        const body = bodyObject(req.body);
        for (const [k, v] of Object.entries(body)) {
            if (k !== 'uuid' && k !== 'server_uuid') {
                s[k] = clone(v);
            }
        }
        return { status: 204 };
    }

    private deleteServer(req: FakeRequest): FakeResponse {
        const s = this.ensure(req, { workflow: true });
        this.strictParams(req, []);
        this.state.servers.delete(s.uuid);
        return { status: 200 };
    }

    private uninstallAgents(req: FakeRequest): FakeResponse {
        const s = this.ensure(req, { running: true });
        const agents = bodyObject(req.body)['agents'] ?? req.query['agents'];
        if (!Array.isArray(agents)) {
            throw invalidParameters('agents', 'agents must be an array');
        }
        const cnAgent = (s.agents ?? []).find((a) => a.name === 'cn-agent');
        const version = cnAgent?.version;
        const ok = version !== undefined && semver.valid(version) !== null && semver.gte(version, '2.8.0');
        if (!ok) {
            throw new FakeHttpError(
                412,
                'PreconditionFailed',
                `cn-agent (v${version ?? 'unknown'}) on server ${s.uuid} does not support "agents_uninstall": require at least cn-agent v2.8.0`,
            );
        }
        const params = { ...bodyObject(req.body), server_uuid: s.uuid };
        return { status: 200, body: { id: this.startTask(s, 'agents_uninstall', params, req) } };
    }

    private factoryReset(req: FakeRequest): FakeResponse {
        const s = this.ensure(req, { workflow: true, running: true });
        this.strictParams(req, ['origin', 'creator_uuid']);
        const nvms = Object.keys(s.vms ?? {}).length;
        if (nvms > 0) {
            throw FakeHttpError.raw(409, `Server may not be reset because it has ${nvms} vms`);
        }
        const job_uuid = randomUUID();
        this.state.factoryResets.push({ server_uuid: s.uuid, job_uuid });
        this.background(async () => {
            await this.delay(this.taskDurationMs);
            // The CN reboots and comes back unsetup; CNAPI keeps its stale agents.
            s.status = 'unknown';
            s.setup = false;
            this.state.nodeAgents.set(s.uuid, []);
        });
        return { status: 202, body: { job_uuid } };
    }

    // ---- tasks

    private startTask(server: CnapiServer, task: string, params: Record<string, unknown>, req: FakeRequest): string {
        const id = randomUUID();
        const plan = this.serverPlans.get(server.uuid)?.shift() ?? this.plans.shift();
        this.state.taskLog.push({ id, task, server_uuid: server.uuid, params, plan: plan?.kind ?? 'run' });
        if (plan?.kind === 'drop') {
            return id;
        }
        const record: CnapiTask = {
            id,
            task,
            server_uuid: server.uuid,
            status: 'active',
            timestamp: isoNow(),
        };
        const reqId = req.headers['x-request-id'];
        if (typeof reqId === 'string') {
            record.req_id = reqId;
        }
        this.state.tasks.set(id, record);

        // cn-agent runs agent tasks one at a time per server.
        const prev = this.queues.get(server.uuid) ?? Promise.resolve();
        const next = prev.then(() => this.runTask(record, server.uuid, params, plan));
        this.queues.set(
            server.uuid,
            next.catch(() => undefined),
        );
        return id;
    }

    private async runTask(record: CnapiTask, serverUuid: string, params: Record<string, unknown>, plan: TaskPlan | undefined): Promise<void> {
        if (this.closing) {
            return;
        }
        if (plan?.kind === 'hang') {
            const then = await new Promise<{ released: boolean; plan?: TaskPlan | undefined }>((resolve) => {
                this.life.signal.addEventListener('abort', () => resolve({ released: false }), { once: true });
                this.hung.push((p) => resolve({ released: true, plan: p }));
            });
            if (!then.released || this.closing) {
                return;
            }
            plan = then.plan;
        }
        // taskDurationMs is the whole task: the install work (image fetch,
        // the agent's self-adoption) comes out of the second half.
        const started = Date.now();
        try {
            await this.delay(this.taskDurationMs / 2);
            if (plan?.kind === 'fail') {
                throw new TaskFailure(plan.message);
            }
            switch (record.task) {
                case 'agent_install':
                    await this.agentInstall(serverUuid, params);
                    break;
                case 'agents_uninstall':
                    this.agentsUninstall(serverUuid, params);
                    break;
                case 'refresh_agents':
                    this.refreshServerAgents(serverUuid);
                    break;
                default:
                    throw new TaskFailure(`unknown task ${record.task}`);
            }
            await this.delay(Math.max(0, this.taskDurationMs - (Date.now() - started)));
            record.status = 'complete';
            record.history = [{ name: 'finish', timestamp: isoNow(), event: {} }];
        } catch (err) {
            if (this.closing) {
                return;
            }
            const message = err instanceof Error ? err.message : String(err);
            record.status = 'failure';
            record.history = [
                { name: 'error', timestamp: isoNow(), event: { error: { message } } },
                { name: 'finish', timestamp: isoNow(), event: {} },
            ];
        }
    }

    private nodeAgentsOf(serverUuid: string): CnapiAgent[] {
        let list = this.state.nodeAgents.get(serverUuid);
        if (!list) {
            list = clone(this.state.servers.get(serverUuid)?.agents ?? []);
            this.state.nodeAgents.set(serverUuid, list);
        }
        return list;
    }

    /** cn-agent's refreshAgents: POST /servers/:uuid {"agents": [...]} with the CN's truth. */
    private refreshServerAgents(serverUuid: string): void {
        const server = this.state.servers.get(serverUuid);
        if (!server) {
            return;
        }
        const agents = clone(this.nodeAgentsOf(serverUuid));
        server.agents = agents;
        if (server.sysinfo) {
            server.sysinfo['SDC Agents'] = agents.map((a) => ({ name: a.name, version: a.version }));
        }
    }

    private async lookupImage(uuid: string): Promise<FakeImage> {
        const known = this.state.images.get(uuid);
        if (known) {
            return known;
        }
        const imgapi = this.imgapi;
        const where = `${typeof imgapi === 'object' ? imgapi.url : 'http://imgapi.coal.example.com'}/images/${uuid}`;
        if (typeof imgapi === 'function') {
            const img = await imgapi(uuid);
            if (!img) throw new TaskFailure(`AgentInstall error: Image not found at ${where}`);
            return img;
        }
        if (imgapi) {
            let res: { status: number; body: unknown };
            try {
                res = await rawRequest(where, { headers: { accept: 'application/json' }, signal: this.life.signal });
            } catch (err) {
                throw new TaskFailure(`AgentInstall error: Error downloading image manifest from ${where}: ${String(err)}`);
            }
            if (res.status === 404) throw new TaskFailure(`AgentInstall error: Image not found at ${where}`);
            if (res.status >= 400) {
                throw new TaskFailure(`AgentInstall error: Error downloading image manifest from ${where}: HTTP ${res.status}`);
            }
            return res.body as FakeImage;
        }
        throw new TaskFailure(`AgentInstall error: Image not found at ${where}`);
    }

    private async agentInstall(serverUuid: string, params: Record<string, unknown>): Promise<void> {
        const imageUuid = params['image_uuid'];
        if (typeof imageUuid !== 'string' || imageUuid.length === 0) {
            throw new TaskFailure('AgentInstall error: missing image_uuid');
        }
        const image = await this.lookupImage(imageUuid);
        const name = image.name;
        if (!name) {
            throw new TaskFailure('AgentInstall error: Manifest is missing "name"');
        }
        const existing = this.nodeAgentsOf(serverUuid).find((a) => a.name === name);
        const uuid = existing?.uuid ?? (this.noUuidFile ? undefined : this.newAgentUuid(serverUuid, name));

        const install = (): void => {
            const entry: CnapiAgent = { name, version: image.version ?? '1.0.0', image_uuid: imageUuid };
            if (uuid) entry.uuid = uuid;
            const list = this.nodeAgentsOf(serverUuid).filter((a) => a.name !== name);
            list.push(entry);
            this.state.nodeAgents.set(serverUuid, list);
            this.refreshServerAgents(serverUuid);
        };

        if (name === 'cn-agent') {
            // The main cn-agent hands over to cn-agent-update and finishes;
            // the new cn-agent posts its agents a little later.
            this.background(async () => {
                await this.delay(this.taskDurationMs / 2 + this.cnAgentUpdateDelayMs);
                install();
            });
            return;
        }
        if (uuid && this.sapiUrl && this.adoptDuringInstall) {
            await this.adopt(serverUuid, name, uuid, imageUuid);
        }
        install();
    }

    /** The agent's postinstall adopt_instance (GET the service by name, then POST /instances; up to adoptTries tries). */
    private async adopt(serverUuid: string, agent: string, uuid: string, imageUuid: string): Promise<void> {
        const sapi = (this.sapiUrl as string).replace(/\/+$/, '');
        for (let attempt = 1; attempt <= this.adoptTries; attempt++) {
            const rec: AdoptionAttempt = { server_uuid: serverUuid, agent, uuid, attempt, ok: false };
            this.state.adoptions.push(rec);
            try {
                const svcs = await rawRequest(`${sapi}/services?type=agent&name=${encodeURIComponent(agent)}`, {
                    headers: { accept: 'application/json' },
                    signal: this.life.signal,
                });
                rec.status = svcs.status;
                if (svcs.status >= 400) {
                    throw new Error(`GET /services: HTTP ${svcs.status}`);
                }
                // `json -Ha uuid` of an empty list is an empty string.
                const first = Array.isArray(svcs.body) ? (svcs.body[0] as { uuid?: unknown } | undefined) : undefined;
                const serviceUuid = typeof first?.uuid === 'string' ? first.uuid : '';
                const res = await rawRequest(`${sapi}/instances`, {
                    method: 'POST',
                    headers: { accept: 'application/json' },
                    body: { service_uuid: serviceUuid, uuid, params: { server_uuid: serverUuid, image_uuid: imageUuid } },
                    signal: this.life.signal,
                });
                rec.status = res.status;
                if (res.status >= 400) {
                    throw new Error(`POST /instances: HTTP ${res.status}`);
                }
                rec.ok = true;
                return;
            } catch (err) {
                if (this.closing) {
                    throw err;
                }
                rec.error = err instanceof Error ? err.message : String(err);
            }
            if (attempt < this.adoptTries) {
                await this.delay(this.adoptIntervalMs);
            }
        }
        throw new TaskFailure(`AgentInstall error: postinstall of ${agent} failed: could not adopt instance ${uuid} into SAPI after ${this.adoptTries} tries`);
    }

    private agentsUninstall(serverUuid: string, params: Record<string, unknown>): void {
        const names = new Set((params['agents'] as unknown[]).map(String));
        // Removes the packages and their uuid files: a reinstall gets a new uuid.
        this.state.nodeAgents.set(
            serverUuid,
            this.nodeAgentsOf(serverUuid).filter((a) => !names.has(a.name)),
        );
        this.refreshServerAgents(serverUuid);
    }
}

function bodyObject(body: unknown): Record<string, unknown> {
    return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
}

function invalidParameters(field: string, message: string): FakeHttpError {
    const status = field === 'limit' ? 400 : 500;
    return new FakeHttpError(status, 'InvalidParameters', 'Request parameters failed validation', {
        errors: [{ field, code: 'Invalid', message }],
    });
}

/** Which ListServers `extras` brings a field ('status' = any extras). */
function extraGroup(key: string): string {
    if (key === 'agents' || key === 'vms' || key === 'sysinfo') return key;
    if (key === 'status' || key === 'last_heartbeat') return 'status';
    if (key.startsWith('memory_')) return 'memory';
    if (key.startsWith('disk_')) return 'disk';
    if (key.startsWith('unreserved_')) return 'capacity';
    return 'base';
}

export async function startFakeCnapi(opts: FakeCnapiOptions = {}): Promise<FakeCnapi> {
    return new FakeCnapi(opts).start();
}
