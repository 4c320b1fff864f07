// The vm deployer (full mode): VMAPI provisions, reprovisions and destroys
// zones, with SAPI 2.1.2's VMAPI calls and job polling, the CNAPI teardown
// hook, and optional IMGAPI image and NAPI network-name checks first.
// Records go through InstanceRecords so that a failed create leaves no
// record, a failed upgrade the old one and a failed delete the record.

import type { CnapiClient } from '../clients/cnapi.js';
import { isDownstreamStatus } from '../clients/http.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import type { NapiClient } from '../clients/napi.js';
import { jobError, jobErrorName, type VmapiClient, type VmapiJob } from '../clients/vmapi.js';
import { destroyFailed, inContext, invalidArgument, provisionFailed, reprovisionFailed, step, type SapiError } from '../errors.js';
import { copyInto } from '../model/attributes.js';
import type { SapiConfig } from '../config.js';
import { buildPayload } from '../model/payload.js';
import type { Dict, Instance } from '../model/types.js';
import type { CreateResult, DeployReq, Deployer, InstancePlan, InstanceRecords } from '../model/deployer.js';
import { checkImage, checkNetworks, jobFailureText, liveVm, runTeardownHook, vmParams } from './vm-checks.js';

export interface VmDeployerOptions {
    /** Job polling intervals and deadlines. */
    deploy: SapiConfig['deploy'];
    records: InstanceRecords;
    vmapi: VmapiClient;
    imgapi?: ImgapiClient | undefined;
    napi?: NapiClient | undefined;
    cnapi?: CnapiClient | undefined;
}

type JobVerb = 'provision' | 'reprovision' | 'destroy';

export class VmDeployer implements Deployer {
    readonly type = 'vm' as const;
    private readonly records: InstanceRecords;
    private readonly vmapi: VmapiClient;

    constructor(readonly opts: VmDeployerOptions) {
        this.records = opts.records;
        this.vmapi = opts.vmapi;
    }

    /**
     * CreateInstance: checks (image in the local IMGAPI, network names in
     * NAPI), then either records a VM VMAPI already has, or writes the record,
     * calls createVm and (unless async) waits for the job. Any failure after
     * the record was written removes it again.
     */
    async create(req: DeployReq, plan: InstancePlan): Promise<CreateResult> {
        const uuid = plan.instance.uuid;
        const what = `provisioning VM ${uuid}`;
        const payload = buildPayload(plan.application, plan.service, plan.instance);
        await checkImage(this.opts.imgapi, req, payload.image_uuid);
        await checkNetworks(this.opts.napi, req, payload.networks);

        const existing = await step(what, () => this.vmapi.getVm(uuid, { reqId: req.reqId }));
        if (liveVm(existing)) {
            if (existing.state === 'failed') {
                throw invalidArgument(`VM ${uuid} exists in VMAPI in state "failed": destroy it before creating the instance again`);
            }
            // 2.1.2: a VM VMAPI already has is never created again; record it.
            req.log.info({ uuid, state: existing.state }, 'VM already exists in VMAPI: recording it, nothing provisioned');
            return { instance: await this.records.insert(withVmParams(plan.instance, vmParams(existing))) };
        }

        const inserted = await this.records.insert(plan.instance);
        let jobUuid: string;
        try {
            jobUuid = (await step(what, () => this.vmapi.createVm(payload, { reqId: req.reqId }))).job_uuid;
        } catch (err) {
            await this.forget(req, uuid, err);
            throw err;
        }
        req.log.info({ uuid, job_uuid: jobUuid, async: req.async }, 'VMAPI accepted the provision');
        if (req.async) {
            return { instance: inserted, job_uuid: jobUuid };
        }
        try {
            await this.waitOk(req, 'provision', uuid, jobUuid, provisionFailed);
        } catch (err) {
            await this.forget(req, uuid, err);
            throw err;
        }
        return { instance: await this.recordServer(req, inserted) };
    }

    /** Adoption (`exists: true`): the VM must be in VMAPI; it is recorded, nothing provisioned. */
    async adopt(req: DeployReq, plan: InstancePlan): Promise<Instance> {
        const uuid = plan.instance.uuid;
        const vm = await step(`adopting VM ${uuid}`, () => this.vmapi.getVm(uuid, { reqId: req.reqId }));
        if (!liveVm(vm)) {
            throw invalidArgument(`no such zone: ${uuid}`);
        }
        req.log.info({ uuid, server_uuid: vm.server_uuid, image_uuid: vm.image_uuid }, 'adopting an existing VM');
        return this.records.insert(withVmParams(plan.instance, vmParams(vm)));
    }

    /**
     * UpgradeInstance: image check, teardown hook, reprovisionVm and wait.
     * params.image_uuid changes only once the job succeeded. Always waits
     * (2.1.2 has no async upgrade).
     */
    /** Reprovision always waits for the job (2.1.2): `async` is not honoured here. */
    async upgrade(req: DeployReq, plan: InstancePlan, imageUuid: string): Promise<CreateResult> {
        const uuid = plan.instance.uuid;
        await checkImage(this.opts.imgapi, req, imageUuid);
        await runTeardownHook(this.opts, req, uuid, plan.merged.params);
        let jobUuid: string;
        try {
            jobUuid = (await this.vmapi.reprovisionVm(uuid, imageUuid, { reqId: req.reqId })).job_uuid;
        } catch (err) {
            if (isDownstreamStatus(err, 404)) {
                throw invalidArgument(`no such zone: ${uuid}`);
            }
            throw inContext(err, `reprovisioning VM ${uuid}`);
        }
        req.log.info({ uuid, job_uuid: jobUuid, image_uuid: imageUuid }, 'VMAPI accepted the reprovision');
        await this.waitOk(req, 'reprovision', uuid, jobUuid, reprovisionFailed);
        return { instance: await this.records.setImage(uuid, imageUuid) };
    }

    /**
     * DeleteInstance: teardown hook, deleteVm and wait, then the record goes.
     * A VM already gone (404, a 200 without a job, or a job failing with
     * ResourceNotFoundError) is not an error. Any failure keeps the record.
     */
    async destroy(req: DeployReq, plan: InstancePlan): Promise<void> {
        const uuid = plan.instance.uuid;
        await runTeardownHook(this.opts, req, uuid, plan.merged.params);
        const ref = await step(`destroying VM ${uuid}`, () => this.vmapi.deleteVm(uuid, { reqId: req.reqId }));
        if (ref.job_uuid === undefined) {
            req.log.info({ uuid }, 'VM already gone from VMAPI');
        } else {
            const job = await this.wait(req, 'destroy', uuid, ref.job_uuid);
            if (jobError(job) !== null) {
                if (jobErrorName(job) !== 'ResourceNotFoundError') {
                    throw destroyFailed(failureMessage('destroy', uuid, job));
                }
                req.log.info({ uuid, job_uuid: job.uuid }, 'destroy job found no VM: already gone');
            }
        }
        await this.records.remove(uuid);
    }

    // ---- helpers

    /** Polls the job with the configured interval and deadline; errors name the job. */
    private async wait(req: DeployReq, verb: JobVerb, uuid: string, jobUuid: string): Promise<VmapiJob> {
        const d = this.opts.deploy;
        return step(`waiting for the ${verb} of VM ${uuid}`, () =>
            this.vmapi.waitJob(jobUuid, { intervalMs: d.jobPollIntervalMs, deadlineMs: d.jobDeadlineMs, reqId: req.reqId }),
        );
    }

    private async waitOk(req: DeployReq, verb: JobVerb, uuid: string, jobUuid: string, fail: (message: string) => SapiError): Promise<VmapiJob> {
        const job = await this.wait(req, verb, uuid, jobUuid);
        if (jobError(job) !== null) {
            req.log.warn({ uuid, job_uuid: job.uuid, execution: job.execution }, `VMAPI ${verb} job failed`);
            throw fail(failureMessage(verb, uuid, job));
        }
        return job;
    }

    /** After a sync create: params.server_uuid (and image_uuid) as VMAPI placed the VM. */
    private async recordServer(req: DeployReq, inst: Instance): Promise<Instance> {
        let patch: Dict;
        try {
            const vm = await this.vmapi.getVm(inst.uuid, { reqId: req.reqId });
            patch = vm ? vmParams(vm) : {};
        } catch (err) {
            // The VM is provisioned: a failed read only costs the server_uuid.
            req.log.warn({ err, uuid: inst.uuid }, 'could not read the new VM from VMAPI; server_uuid not recorded');
            return inst;
        }
        const params = inst.params ?? {};
        if (Object.keys(patch).every((k) => params[k] === patch[k])) {
            return inst;
        }
        return this.records.mergeParams(inst.uuid, patch);
    }

    /** Removes a record written by a create that then failed (keeps the first error). */
    private async forget(req: DeployReq, uuid: string, cause: unknown): Promise<void> {
        try {
            await this.records.remove(uuid);
            req.log.info({ uuid, err: cause }, 'create failed: instance record removed');
        } catch (err) {
            req.log.error({ uuid, err, cause }, 'create failed and its instance record could not be removed');
        }
    }
}

function failureMessage(verb: JobVerb, uuid: string, job: VmapiJob): string {
    return `VMAPI ${verb} job ${job.name} (${job.uuid}) for VM ${uuid} failed: ${jobFailureText(job)}`;
}

function withVmParams(inst: Instance, vm: Record<string, unknown>): Instance {
    return { ...inst, params: copyInto(copyInto({}, inst.params), vm) };
}
