// VMAPI client: the calls SAPI makes for vm instances (getVm, createVm,
// reprovision, deleteVm, as SAPI 2.1.2 makes them) and workflow job polling.

import { downstream, taskTimeout, type SapiError } from '../errors.js';
import { poll } from './poll.js';
import { ServiceClient, type ServiceClientOptions, isDownstreamStatus, isTransientError, requiredString, secondsText, seg } from './http.js';

// ---- wire shapes

export interface VmapiVm {
    uuid: string;
    state?: string;
    server_uuid?: string;
    image_uuid?: string;
    owner_uuid?: string;
    alias?: string;
    brand?: string;
    [key: string]: unknown;
}

/** The accepted answer of createVm / reprovisionVm / deleteVm (202). */
export interface VmapiJobRef {
    vm_uuid: string;
    job_uuid: string;
}

export type VmapiJobExecution = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled' | (string & {});

export interface VmapiChainResult {
    name: string;
    result?: unknown;
    /** An object with `message` (and usually `name`), or a string. */
    error?: unknown;
    started_at?: string;
    finished_at?: string;
}

export interface VmapiJob {
    uuid: string;
    name: string;
    execution: VmapiJobExecution;
    chain_results: VmapiChainResult[];
    [key: string]: unknown;
}

// ---- options

export type VmapiClientOptions = ServiceClientOptions;

export interface VmapiCallOptions {
    reqId?: string | undefined;
}

export interface WaitJobOptions extends VmapiCallOptions {
    /** Default 5 s (2.1.2). */
    intervalMs?: number;
    /** Default 1 h (2.1.2: 720 polls of 5 s). */
    deadlineMs?: number;
    /** Request errors in a row that give up (2.1.2: 5). Default 5. */
    maxErrors?: number;
    signal?: AbortSignal;
}

export const FINISHED_EXECUTIONS: ReadonlySet<string> = new Set(['succeeded', 'failed', 'canceled']);

function lastChainResult(job: VmapiJob): VmapiChainResult | undefined {
    const chain = Array.isArray(job.chain_results) ? job.chain_results : [];
    return chain[chain.length - 1];
}

/**
 * The failure message of a finished job, null when it succeeded. As 2.1.2:
 * the last chain result's `error.message`, else
 * `job <name> (<uuid>) failed: <result.name>: <error>`; a failed or canceled
 * job without a chain error gives `job <name> (<uuid>) <execution>`.
 */
export function jobError(job: VmapiJob): string | null {
    const last = lastChainResult(job);
    const error = last?.error;
    if (last && error !== undefined && error !== null && error !== '') {
        if (typeof error === 'object') {
            const m = (error as { message?: unknown }).message;
            if (typeof m === 'string' && m.length > 0) {
                return m;
            }
        }
        const text = typeof error === 'string' ? error : JSON.stringify(error);
        return `job ${job.name} (${job.uuid}) failed: ${last.name}: ${text}`;
    }
    if (job.execution === 'failed' || job.execution === 'canceled') {
        return `job ${job.name} (${job.uuid}) ${job.execution}`;
    }
    return null;
}

/** `name` of the last chain result's error (e.g. `ResourceNotFoundError`), if any. */
export function jobErrorName(job: VmapiJob): string | undefined {
    const error = lastChainResult(job)?.error;
    if (typeof error === 'object' && error !== null) {
        const n = (error as { name?: unknown }).name;
        return typeof n === 'string' ? n : undefined;
    }
    return undefined;
}

export class VmapiClient extends ServiceClient {
    constructor(opts: VmapiClientOptions) {
        super('VMAPI', opts);
    }

    /** GET /vms/:uuid; null on 404. Destroyed VMs come back with `state: "destroyed"`. */
    async getVm(uuid: string, opts: VmapiCallOptions = {}): Promise<VmapiVm | null> {
        try {
            return (await this.http.get<VmapiVm>(`/vms/${seg(uuid)}`, opts)).body;
        } catch (err) {
            if (isDownstreamStatus(err, 404)) {
                return null;
            }
            throw err;
        }
    }

    /** POST /vms (202 {vm_uuid, job_uuid}). */
    async createVm(payload: Record<string, unknown>, opts: VmapiCallOptions = {}): Promise<VmapiJobRef> {
        const res = await this.http.post<VmapiJobRef>('/vms', { body: payload, reqId: opts.reqId });
        return {
            vm_uuid: requiredString('VMAPI', res.body, 'vm_uuid', 'POST /vms'),
            job_uuid: requiredString('VMAPI', res.body, 'job_uuid', 'POST /vms'),
        };
    }

    /** POST /vms/:uuid?action=reprovision {image_uuid} (202 {vm_uuid, job_uuid}). */
    async reprovisionVm(uuid: string, imageUuid: string, opts: VmapiCallOptions = {}): Promise<VmapiJobRef> {
        const res = await this.http.post<VmapiJobRef>(`/vms/${seg(uuid)}`, {
            query: { action: 'reprovision' },
            body: { image_uuid: imageUuid },
            reqId: opts.reqId,
        });
        const what = `POST /vms/${uuid}?action=reprovision`;
        return {
            vm_uuid: requiredString('VMAPI', res.body, 'vm_uuid', what),
            job_uuid: requiredString('VMAPI', res.body, 'job_uuid', what),
        };
    }

    /**
     * DELETE /vms/:uuid. No `job_uuid` in the result means the VM is already
     * gone (a 200 without a job, or a 404).
     */
    async deleteVm(uuid: string, opts: VmapiCallOptions = {}): Promise<{ vm_uuid?: string; job_uuid?: string }> {
        try {
            const res = await this.http.del<Partial<VmapiJobRef> | undefined>(`/vms/${seg(uuid)}`, opts);
            const out: { vm_uuid?: string; job_uuid?: string } = {};
            if (res.body?.vm_uuid) out.vm_uuid = res.body.vm_uuid;
            if (res.body?.job_uuid) out.job_uuid = res.body.job_uuid;
            return out;
        } catch (err) {
            if (isDownstreamStatus(err, 404)) {
                return {};
            }
            throw err;
        }
    }

    /** GET /jobs/:uuid. */
    async getJob(uuid: string, opts: VmapiCallOptions = {}): Promise<VmapiJob> {
        return (await this.http.get<VmapiJob>(`/jobs/${seg(uuid)}`, opts)).body;
    }

    /**
     * Polls GET /jobs/:uuid until the job is succeeded, failed or canceled and
     * returns it (check `jobError(job)`). Gives up after `maxErrors` request
     * errors in a row (the last error is thrown, with the job named); the
     * deadline gives 504 TaskTimeoutError.
     */
    async waitJob(jobUuid: string, opts: WaitJobOptions = {}): Promise<VmapiJob> {
        const intervalMs = opts.intervalMs ?? 5000;
        const deadlineMs = opts.deadlineMs ?? 60 * 60 * 1000;
        const maxErrors = opts.maxErrors ?? 5;
        let errors = 0;
        let last: VmapiJob | undefined;
        return poll<VmapiJob>({
            intervalMs,
            deadlineMs,
            signal: opts.signal,
            check: async () => {
                try {
                    last = await this.getJob(jobUuid, { reqId: opts.reqId });
                    errors = 0;
                } catch (err) {
                    // A 404 right after the job was accepted is treated like a
                    // transient error: WFAPI may answer before the job is visible.
                    if (!isTransientError(err) && !isDownstreamStatus(err, 404)) {
                        throw err;
                    }
                    errors += 1;
                    if (errors >= maxErrors) {
                        const e = err as SapiError;
                        const status = e.statusCode === 503 || e.statusCode === 504 ? e.statusCode : 502;
                        throw downstream(status, `VMAPI job ${jobUuid}: giving up after ${errors} errors: ${e.message}`, err);
                    }
                }
                if (last && FINISHED_EXECUTIONS.has(last.execution)) {
                    return last;
                }
                return undefined;
            },
            onTimeout: () => {
                const what = last ? `job ${last.name} (${jobUuid})` : `job ${jobUuid}`;
                return taskTimeout(`VMAPI ${what} timed out after ${secondsText(deadlineMs)}` + (last ? ` (execution: ${last.execution})` : ''));
            },
        });
    }
}
