// Fake VMAPI: the VM and job routes SAPI uses, with
// workflow jobs that run asynchronously and can be made to fail or hang.

import { randomUUID } from 'node:crypto';

import type { VmapiChainResult, VmapiJob, VmapiVm } from '../../lib/clients/vmapi.js';
import { FakeHttpError, FakeHttpServer, clone, isoNow, type FakeLog, type FakeRequest, type FakeResponse } from './fake-http.js';

export interface FakeVmapiState {
    vms: Map<string, VmapiVm>;
    jobs: Map<string, VmapiJob>;
}

export interface FakeVmapiOptions {
    log?: FakeLog;
    /** Time a job takes. Default 50 ms. */
    jobDurationMs?: number;
    vms?: Partial<VmapiVm>[];
    /** Server for VMs created without `server_uuid` (what DAPI would pick). */
    defaultServerUuid?: string;
}

/** ListVms answers at most this many VMs. */
const LIST_LIMIT = 1000;

type JobPlan = { kind: 'fail'; error: unknown } | { kind: 'hang' };

type JobKind = 'provision' | 'reprovision' | 'destroy';

const CHAINS: Record<JobKind, { name: string; steps: string[] }> = {
    provision: {
        name: 'provision-8.5.0',
        steps: ['common.validate_params', 'cnapi.acquire_vm_ticket', 'cnapi.provision_vm', 'cnapi.wait_task', 'vmapi.put_vm'],
    },
    reprovision: {
        name: 'reprovision-7.0.0',
        steps: ['common.validate_params', 'cnapi.reprovision_vm', 'cnapi.wait_task', 'vmapi.put_vm'],
    },
    destroy: {
        name: 'destroy-7.3.0',
        steps: ['common.validate_params', 'cnapi.destroy_vm', 'cnapi.wait_task', 'vmapi.put_vm'],
    },
};

export class FakeVmapi extends FakeHttpServer {
    readonly state: FakeVmapiState = { vms: new Map(), jobs: new Map() };
    jobDurationMs: number;
    defaultServerUuid: string;
    private readonly plans: JobPlan[] = [];
    /** While set, jobs wait in `running` (after their first step) until it resolves. */
    private hold: Promise<void> | null = null;

    constructor(opts: FakeVmapiOptions = {}) {
        super({ name: 'VMAPI', log: opts.log });
        this.jobDurationMs = opts.jobDurationMs ?? 50;
        this.defaultServerUuid = opts.defaultServerUuid ?? randomUUID();
        for (const vm of opts.vms ?? []) {
            this.addVm(vm);
        }
        this.route('GET', '/vms', (req) => this.listVms(req));
        this.route('GET', '/vms/:uuid', (req) => ({ status: 200, body: clone(this.vmOr404(req)) }));
        this.route('POST', '/vms', (req) => this.createVm(req));
        this.route('POST', '/vms/:uuid', (req) => this.vmAction(req));
        this.route('DELETE', '/vms/:uuid', (req) => this.deleteVm(req));
        this.route('GET', '/jobs/:uuid', (req) => {
            const job = this.state.jobs.get(req.params['uuid'] ?? '');
            if (!job) {
                throw new FakeHttpError(404, 'ResourceNotFound', 'Job not found');
            }
            return { status: 200, body: clone(job) };
        });
    }

    // ---- helpers for tests

    addVm(vm: Partial<VmapiVm> = {}): VmapiVm {
        const full: VmapiVm = {
            uuid: vm.uuid ?? randomUUID(),
            state: 'running',
            brand: 'joyent-minimal',
            server_uuid: this.defaultServerUuid,
            image_uuid: randomUUID(),
            ...vm,
        };
        this.state.vms.set(full.uuid, full);
        return full;
    }

    /** The next job fails; its last chain result gets `error: {name, message}`. */
    failNextJob(message: string, errorName = 'Error'): void {
        this.plans.push({ kind: 'fail', error: { name: errorName, message } });
    }

    /** The next job fails with this exact chain-result `error` (e.g. a bare string). */
    failNextJobWith(error: unknown): void {
        this.plans.push({ kind: 'fail', error });
    }

    /** The next job stays `running` forever. */
    hangNextJob(): void {
        this.plans.push({ kind: 'hang' });
    }

    /**
     * Jobs stay `running` (after their first step) until the returned
     * function is called; then they finish as planned.
     */
    holdJobs(): () => void {
        let release = (): void => undefined;
        const hold = new Promise<void>((resolve) => (release = resolve));
        this.hold = hold;
        return () => {
            if (this.hold === hold) this.hold = null;
            release();
        };
    }

    // ---- routes

    private vmOr404(req: FakeRequest): VmapiVm {
        const vm = this.state.vms.get(req.params['uuid'] ?? '');
        if (!vm) {
            throw new FakeHttpError(404, 'ResourceNotFound', 'VM not found');
        }
        return vm;
    }

    /**
     * ListVms as VMAPI filters it: `owner_uuid`, `server_uuid`, `image_uuid`,
     * `state` (`active`: neither destroyed nor failed), `tag.KEY=VALUE`;
     * paged with `limit` (default and maximum 1000) and `offset`, in uuid order.
     */
    private listVms(req: FakeRequest): FakeResponse {
        const q = req.query;
        const limit = q['limit'] === undefined ? LIST_LIMIT : Number(q['limit']);
        if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT) {
            throw validationFailed('limit', 'Invalid', `Must be an integer between 1 and ${LIST_LIMIT}`);
        }
        const offset = q['offset'] === undefined ? 0 : Number(q['offset']);
        if (!Number.isInteger(offset) || offset < 0) {
            throw validationFailed('offset', 'Invalid', 'Must be an integer >= 0');
        }
        const matches = (vm: VmapiVm): boolean => {
            for (const [k, v] of Object.entries(q)) {
                if (typeof v !== 'string') continue;
                if (k === 'owner_uuid' || k === 'server_uuid' || k === 'image_uuid') {
                    if (vm[k] !== v) return false;
                } else if (k === 'state') {
                    if (v === 'active' ? vm.state === 'destroyed' || vm.state === 'failed' : vm.state !== v) return false;
                } else if (k.startsWith('tag.')) {
                    const tags = (vm['tags'] ?? {}) as Record<string, unknown>;
                    if (String(tags[k.slice(4)]) !== v) return false;
                }
            }
            return true;
        };
        const all = [...this.state.vms.values()].filter(matches).sort((a, b) => a.uuid.localeCompare(b.uuid));
        return { status: 200, body: clone(all.slice(offset, offset + limit)), headers: { 'x-joyent-resource-count': String(all.length) } };
    }

    private createVm(req: FakeRequest): FakeResponse {
        const body = req.body;
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
            throw validationFailed('payload', 'Missing', 'Is required');
        }
        const payload = body as Record<string, unknown>;
        if (typeof payload['owner_uuid'] !== 'string') {
            throw validationFailed('owner_uuid', 'Missing', 'Is required');
        }
        const uuid = typeof payload['uuid'] === 'string' ? payload['uuid'] : randomUUID();
        const existing = this.state.vms.get(uuid);
        if (existing && existing.state !== 'destroyed') {
            throw validationFailed('uuid', 'Duplicate', 'Already exists');
        }
        const vm: VmapiVm = {
            ...clone(payload),
            uuid,
            state: 'provisioning',
            server_uuid: typeof payload['server_uuid'] === 'string' ? payload['server_uuid'] : this.defaultServerUuid,
        };
        this.state.vms.set(uuid, vm);
        const job = this.startJob('provision', vm, (ok) => {
            vm.state = ok ? 'running' : 'failed';
        });
        return this.accepted(vm.uuid, job.uuid);
    }

    private vmAction(req: FakeRequest): FakeResponse {
        const vm = this.vmOr404(req);
        const body = (typeof req.body === 'object' && req.body !== null ? req.body : {}) as Record<string, unknown>;
        const action = req.query['action'] ?? body['action'];
        if (action === undefined) {
            throw new FakeHttpError(409, 'MissingParameter', 'action is required');
        }
        if (action !== 'reprovision') {
            throw new FakeHttpError(409, 'InvalidArgument', `action ${JSON.stringify(action)} is not supported by this fake`);
        }
        const imageUuid = req.query['image_uuid'] ?? body['image_uuid'];
        if (typeof imageUuid !== 'string') {
            throw validationFailed('image_uuid', 'Missing', 'Is required');
        }
        const job = this.startJob('reprovision', vm, (ok) => {
            if (ok) vm.image_uuid = imageUuid;
        });
        return this.accepted(vm.uuid, job.uuid);
    }

    private deleteVm(req: FakeRequest): FakeResponse {
        const vm = this.vmOr404(req);
        if (vm.state === 'destroyed') {
            return { status: 200, body: { vm_uuid: vm.uuid } };
        }
        const job = this.startJob('destroy', vm, (ok) => {
            if (ok) vm.state = 'destroyed';
        });
        return this.accepted(vm.uuid, job.uuid);
    }

    private accepted(vmUuid: string, jobUuid: string): FakeResponse {
        return {
            status: 202,
            body: { vm_uuid: vmUuid, job_uuid: jobUuid },
            headers: { 'workflow-api': 'http://workflow.coal.example.com' },
        };
    }

    // ---- jobs

    private startJob(kind: JobKind, vm: VmapiVm, done: (ok: boolean) => void): VmapiJob {
        const chain = CHAINS[kind];
        const job: VmapiJob = {
            uuid: randomUUID(),
            name: chain.name,
            execution: 'queued',
            chain_results: [],
            params: { vm_uuid: vm.uuid, server_uuid: vm.server_uuid, image_uuid: vm.image_uuid, task: kind },
            vm_uuid: vm.uuid,
            created_at: isoNow(),
        };
        this.state.jobs.set(job.uuid, job);
        const plan = this.plans.shift();
        this.background(async () => {
            await this.delay(this.jobDurationMs / 2);
            job.execution = 'running';
            job.chain_results = [stepResult(chain.steps[0] ?? '')];
            if (plan?.kind === 'hang') {
                return;
            }
            if (this.hold) {
                await this.hold;
            }
            await this.delay(this.jobDurationMs / 2);
            if (plan?.kind === 'fail') {
                const failAt = Math.min(2, chain.steps.length - 1);
                const results = chain.steps.slice(0, failAt).map(stepResult);
                results.push({ ...stepResult(chain.steps[failAt] ?? ''), result: '', error: clone(plan.error) });
                job.chain_results = results;
                job.execution = 'failed';
                done(false);
                return;
            }
            job.chain_results = chain.steps.map(stepResult);
            job.execution = 'succeeded';
            done(true);
        });
        return job;
    }
}

function stepResult(name: string): VmapiChainResult {
    const now = isoNow();
    return { name, result: 'OK', error: '', started_at: now, finished_at: now };
}

function validationFailed(field: string, code: string, message: string): FakeHttpError {
    return new FakeHttpError(409, 'ValidationFailed', 'Invalid VM parameters', { errors: [{ field, code, message }] });
}

export async function startFakeVmapi(opts: FakeVmapiOptions = {}): Promise<FakeVmapi> {
    return new FakeVmapi(opts).start();
}
