// CNAPI client: servers, agent install/uninstall/refresh tasks, task polling
// and the vm teardown-hook execute (a zlogin command run on the VM's server).

import { agentTaskFailed, downstream, taskTimeout, type SapiError } from '../errors.js';
import { poll } from './poll.js';
import { ServiceClient, type ServiceClientOptions, isDownstreamStatus, isTransientError, requiredString, seg, secondsText, type QueryValue } from './http.js';

// ---- wire shapes

/** One `server.agents` entry (GET /servers/:uuid). `uuid` is absent when the CN has no uuid file. */
export interface CnapiAgent {
    name: string;
    version?: string;
    image_uuid?: string;
    uuid?: string;
}

export type CnapiServerStatus = 'running' | 'unknown' | 'rebooting' | (string & {});

export interface CnapiServer {
    uuid: string;
    hostname: string;
    /** Absent from ListServers answers given without `extras`. */
    status?: CnapiServerStatus;
    transitional_status?: string;
    setup: boolean;
    headnode: boolean;
    datacenter?: string;
    /** Only with `extras=agents` on ListServers; always on GetServer. */
    agents?: CnapiAgent[];
    sysinfo?: Record<string, unknown>;
    /** Keyed by VM uuid. */
    vms?: Record<string, unknown>;
    last_heartbeat?: string;
    [key: string]: unknown;
}

export interface CnapiTaskHistoryEntry {
    name: string;
    timestamp: string;
    event: { error?: { message?: string; [k: string]: unknown }; [k: string]: unknown };
}

export type CnapiTaskStatus = 'active' | 'complete' | 'failure';

export interface CnapiTask {
    id: string;
    req_id?: string;
    task: string;
    server_uuid: string;
    status: CnapiTaskStatus;
    timestamp: string;
    history?: CnapiTaskHistoryEntry[];
}

export interface CnapiPing {
    ready: boolean;
    services: Record<string, string>;
    /** From the `Server: cnapi/<version>` header, if sent. */
    version: string | undefined;
}

// ---- options

export interface CnapiClientOptions extends ServiceClientOptions {
    /** ListServers page size when auto-paging (CNAPI max and sdc-clients: 1000). */
    pageSize?: number;
}

export interface CallOptions {
    reqId?: string | undefined;
}

export interface ListServersOptions extends CallOptions {
    uuids?: string[];
    setup?: boolean;
    headnode?: boolean;
    hostname?: string;
    /** e.g. `['agents']` or `'sysinfo,agents'`. */
    extras?: string[] | string;
    fields?: string[] | string;
    /** Giving limit or offset turns auto-paging off (as sdc-clients does). */
    limit?: number;
    offset?: number;
}

export interface PollOptions extends CallOptions {
    /** Between polls. Default 1500 ms (a task is polled every 1–2 s). */
    intervalMs?: number;
    /** Overall wait. Default 30 min (give 60 min for cn-agent). */
    deadlineMs?: number;
    /** How long a 404 may last before the task counts as lost. Default 30 s. */
    notFoundGraceMs?: number;
    /** Consecutive transient errors tolerated; one more fails. Default 5. */
    maxConsecutiveErrors?: number;
    /** For error messages when the task record never shows up. */
    server?: string;
    signal?: AbortSignal;
}

/** The error pollTask throws for a failed or lost task. */
export type TaskError = SapiError & { taskId: string; serverUuid: string | undefined; task: CnapiTask | undefined };

export const DEFAULT_TASK_INTERVAL_MS = 1500;
export const DEFAULT_TASK_DEADLINE_MS = 30 * 60 * 1000;
export const DEFAULT_NOT_FOUND_GRACE_MS = 30_000;
export const DEFAULT_MAX_CONSECUTIVE_ERRORS = 5;

/** `history[0].event.error.message`, else the first error message in the history. */
export function taskErrorMessage(task: CnapiTask): string {
    const history = task.history ?? [];
    const first = history[0]?.event?.error?.message;
    if (typeof first === 'string') {
        return first;
    }
    for (const h of history) {
        const m = h.event?.error?.message;
        if (typeof m === 'string') {
            return m;
        }
    }
    return 'unknown error';
}

function taskError(err: SapiError, taskId: string, serverUuid: string | undefined, task: CnapiTask | undefined): TaskError {
    return Object.assign(err, { taskId, serverUuid, task });
}

const UUIDS_PER_LIST = 100;

export class CnapiClient extends ServiceClient {
    private readonly pageSize: number;

    constructor(opts: CnapiClientOptions) {
        super('CNAPI', opts);
        this.pageSize = opts.pageSize ?? 1000;
    }

    async ping(opts: CallOptions = {}): Promise<CnapiPing> {
        const res = await this.http.get<{ ready: boolean; services: Record<string, string> }>('/ping', opts);
        const server = res.headers['server'];
        const m = typeof server === 'string' ? /^cnapi\/(\S+)/.exec(server) : null;
        return { ready: res.body.ready, services: res.body.services, version: m?.[1] };
    }

    /** GET /servers/:uuid. A 404 throws (DownstreamHttpError, "Server <uuid> not found"). */
    async getServer(uuid: string, opts: CallOptions = {}): Promise<CnapiServer> {
        return (await this.http.get<CnapiServer>(`/servers/${seg(uuid)}`, opts)).body;
    }

    /**
     * GET /servers, auto-paging (limit = page size, offset += page length until
     * a short page) unless `limit`/`offset` is given. Long `uuids` lists are
     * split over several requests to keep URLs short.
     */
    async listServers(opts: ListServersOptions = {}): Promise<CnapiServer[]> {
        if (opts.uuids && opts.uuids.length === 0) {
            return [];
        }
        if (opts.uuids && opts.uuids.length > UUIDS_PER_LIST) {
            const out: CnapiServer[] = [];
            for (let i = 0; i < opts.uuids.length; i += UUIDS_PER_LIST) {
                out.push(...(await this.listServers({ ...opts, uuids: opts.uuids.slice(i, i + UUIDS_PER_LIST) })));
            }
            return out;
        }
        const query: Record<string, QueryValue> = {
            uuids: opts.uuids?.join(','),
            setup: opts.setup,
            headnode: opts.headnode,
            hostname: opts.hostname,
            extras: Array.isArray(opts.extras) ? opts.extras.join(',') : opts.extras,
            fields: Array.isArray(opts.fields) ? opts.fields.join(',') : opts.fields,
        };
        if (opts.limit !== undefined || opts.offset !== undefined) {
            query['limit'] = opts.limit;
            query['offset'] = opts.offset;
            return (await this.http.get<CnapiServer[]>('/servers', { query, reqId: opts.reqId })).body;
        }
        const all: CnapiServer[] = [];
        for (let offset = 0; ;) {
            const page = (
                await this.http.get<CnapiServer[]>('/servers', {
                    query: { ...query, limit: this.pageSize, offset },
                    reqId: opts.reqId,
                })
            ).body;
            all.push(...page);
            if (page.length < this.pageSize) {
                return all;
            }
            offset += page.length;
        }
    }

    /** POST /servers/:uuid/install-agent → the task id (install and upgrade alike). */
    async installAgent(server: string, imageUuid: string, opts: CallOptions = {}): Promise<{ id: string }> {
        const res = await this.http.post<{ id: string }>(`/servers/${seg(server)}/install-agent`, {
            body: { image_uuid: imageUuid },
            reqId: opts.reqId,
        });
        return { id: requiredString('CNAPI', res.body, 'id', `POST /servers/${server}/install-agent`) };
    }

    /** POST /servers/:uuid/uninstall-agents; 412 (cn-agent < 2.8.0) throws as is. */
    async uninstallAgents(server: string, names: string[], opts: CallOptions = {}): Promise<{ id: string }> {
        const res = await this.http.post<{ id: string }>(`/servers/${seg(server)}/uninstall-agents`, {
            body: { agents: names },
            reqId: opts.reqId,
        });
        return { id: requiredString('CNAPI', res.body, 'id', `POST /servers/${server}/uninstall-agents`) };
    }

    /**
     * POST /servers/:uuid/refresh-agents (for a future CNAPI; no CNAPI has it today).
     * null when the route does not exist; an unknown server still throws.
     */
    async refreshAgents(server: string, opts: CallOptions = {}): Promise<{ id: string } | null> {
        try {
            const res = await this.http.post<{ id: string }>(`/servers/${seg(server)}/refresh-agents`, {
                reqId: opts.reqId,
            });
            return { id: requiredString('CNAPI', res.body, 'id', `POST /servers/${server}/refresh-agents`) };
        } catch (err) {
            if (isDownstreamStatus(err, 404) && !/^Server .* not found$/.test(err.message)) {
                return null;
            }
            throw err;
        }
    }

    /** GET /tasks/:id. A 404 throws ("no such task found"). */
    async getTask(id: string, opts: CallOptions = {}): Promise<CnapiTask> {
        return (await this.http.get<CnapiTask>(`/tasks/${seg(id)}`, opts)).body;
    }

    /** POST /servers/:uuid/execute {script} (teardown hook); resolves to stdout. */
    async execute(server: string, script: string, opts: CallOptions & { args?: string[] } = {}): Promise<string> {
        const body: { script: string; args?: string[] } = { script };
        if (opts.args) body.args = opts.args;
        const res = await this.http.post<unknown>(`/servers/${seg(server)}/execute`, { body, reqId: opts.reqId });
        if (res.body === undefined || res.body === null) {
            return '';
        }
        return typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
    }

    /**
     * Polls GET /tasks/:id until `complete` (resolves with the task) or
     * `failure` (throws 500 AgentTaskFailedError "Task <id> failed with error:
     * <history[0].event.error.message> (server <uuid>)"). A 404 lasting longer
     * than `notFoundGraceMs` is a failure (the record was never written); more
     * than `maxConsecutiveErrors` transient errors in a row give up with the
     * last error's status; the deadline gives 504 TaskTimeoutError.
     */
    async pollTask(id: string, opts: PollOptions = {}): Promise<CnapiTask> {
        const intervalMs = opts.intervalMs ?? DEFAULT_TASK_INTERVAL_MS;
        const deadlineMs = opts.deadlineMs ?? DEFAULT_TASK_DEADLINE_MS;
        const graceMs = opts.notFoundGraceMs ?? DEFAULT_NOT_FOUND_GRACE_MS;
        const maxErrors = opts.maxConsecutiveErrors ?? DEFAULT_MAX_CONSECUTIVE_ERRORS;
        let server = opts.server;
        let errors = 0;
        let notFoundSince: number | undefined;
        let last: CnapiTask | undefined;

        return poll<CnapiTask>({
            intervalMs,
            deadlineMs,
            signal: opts.signal,
            check: async () => {
                let task: CnapiTask | undefined;
                try {
                    task = await this.getTask(id, { reqId: opts.reqId });
                } catch (err) {
                    if (isDownstreamStatus(err, 404)) {
                        errors = 0;
                        notFoundSince ??= Date.now();
                        if (Date.now() - notFoundSince > graceMs) {
                            throw taskError(
                                agentTaskFailed(
                                    `CNAPI task ${id} on server ${server ?? 'unknown'} was not found for ${secondsText(graceMs)} (the task record was never written)`,
                                ),
                                id,
                                server,
                                last,
                            );
                        }
                    } else if (isTransientError(err)) {
                        errors += 1;
                        if (errors > maxErrors) {
                            const e = err as SapiError;
                            const status = e.statusCode === 503 || e.statusCode === 504 ? e.statusCode : 502;
                            throw taskError(
                                downstream(
                                    status,
                                    `CNAPI task ${id} on server ${server ?? 'unknown'}: giving up after ${errors} consecutive errors: ${e.message}`,
                                    err,
                                ),
                                id,
                                server,
                                last,
                            );
                        }
                    } else {
                        throw err;
                    }
                }
                if (task) {
                    last = task;
                    server = task.server_uuid || server;
                    errors = 0;
                    notFoundSince = undefined;
                    if (task.status === 'complete') {
                        return task;
                    }
                    if (task.status === 'failure') {
                        throw taskError(
                            agentTaskFailed(`Task ${id} failed with error: ${taskErrorMessage(task)} (server ${server ?? 'unknown'})`),
                            id,
                            server,
                            task,
                        );
                    }
                }
                return undefined;
            },
            onTimeout: () =>
                taskError(
                    taskTimeout(
                        `CNAPI task ${id} on server ${server ?? 'unknown'} timed out after ${secondsText(deadlineMs)}` +
                            (last ? ` (status: ${last.status})` : ''),
                    ),
                    id,
                    server,
                    last,
                ),
        });
    }

    /**
     * cn-agent updates itself after its task finished (cn-agent-update installs
     * the new cn-agent once the CNAPI task is done), so this polls
     * GET /servers/:uuid until `agents[name].image_uuid === imageUuid`.
     * Resolves with that agent entry; deadline → 504 TaskTimeoutError.
     */
    async waitForAgentImage(server: string, name: string, imageUuid: string, opts: Omit<PollOptions, 'notFoundGraceMs' | 'server'> = {}): Promise<CnapiAgent> {
        const intervalMs = opts.intervalMs ?? DEFAULT_TASK_INTERVAL_MS;
        const deadlineMs = opts.deadlineMs ?? 60 * 60 * 1000;
        const maxErrors = opts.maxConsecutiveErrors ?? DEFAULT_MAX_CONSECUTIVE_ERRORS;
        let errors = 0;
        let seen: string | undefined;
        return poll<CnapiAgent>({
            intervalMs,
            deadlineMs,
            signal: opts.signal,
            check: async () => {
                try {
                    const s = await this.getServer(server, { reqId: opts.reqId });
                    errors = 0;
                    const agent = (s.agents ?? []).find((a) => a.name === name);
                    seen = agent?.image_uuid;
                    if (agent && agent.image_uuid === imageUuid) {
                        return agent;
                    }
                } catch (err) {
                    if (!isTransientError(err) || ++errors > maxErrors) {
                        throw err;
                    }
                }
                return undefined;
            },
            onTimeout: () =>
                taskTimeout(
                    `${name} on server ${server} did not reach image ${imageUuid} within ${secondsText(deadlineMs)}` +
                        ` (server.agents has ${seen ?? 'no entry'})`,
                ),
        });
    }
}
