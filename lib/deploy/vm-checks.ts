// Helpers of the vm deployer: the pre-provision checks (local IMGAPI image,
// NAPI network names), the teardown hook run through CNAPI, and the wording
// of job failures.

import type { CnapiClient } from '../clients/cnapi.js';
import { isDownstreamHttpError } from '../clients/http.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import type { NapiClient } from '../clients/napi.js';
import type { VmapiClient, VmapiJob, VmapiVm } from '../clients/vmapi.js';
import { inContext, invalidArgument, step, teardownHookFailed } from '../errors.js';
import { isPlainObject } from '../model/attributes.js';
import type { Dict } from '../model/types.js';
import type { DeployReq } from '../model/deployer.js';

/**
 * Why a finished job failed, for messages: the last chain result's error
 * message (or text) and the step that failed; `execution <state>` when the
 * job has no chain error (e.g. canceled).
 */
export function jobFailureText(job: VmapiJob): string {
    const chain = Array.isArray(job.chain_results) ? job.chain_results : [];
    const last = chain[chain.length - 1];
    const error = last?.error;
    if (last && error !== undefined && error !== null && error !== '') {
        let why: string;
        if (isPlainObject(error) && typeof error.message === 'string' && error.message.length > 0) {
            why = error.message;
        } else {
            why = typeof error === 'string' ? error : JSON.stringify(error);
        }
        return `${why} (at step ${last.name})`;
    }
    return `execution ${job.execution}`;
}

/** A VM that counts as present (VMAPI keeps destroyed VMs around). */
export function liveVm(vm: VmapiVm | null): vm is VmapiVm {
    return vm !== null && vm.state !== 'destroyed';
}

/** params.image_uuid / params.server_uuid as VMAPI knows them. */
export function vmParams(vm: VmapiVm): Dict {
    const out: Dict = {};
    if (typeof vm.image_uuid === 'string' && vm.image_uuid.length > 0) {
        out.image_uuid = vm.image_uuid;
    }
    if (typeof vm.server_uuid === 'string' && vm.server_uuid.length > 0) {
        out.server_uuid = vm.server_uuid;
    }
    return out;
}

/**
 * The image must exist in the local IMGAPI (a clear 409 instead of a VMAPI
 * job failing minutes later). Skipped when no IMGAPI is configured.
 */
export async function checkImage(imgapi: ImgapiClient | undefined, req: DeployReq, imageUuid: unknown): Promise<void> {
    if (!imgapi || typeof imageUuid !== 'string') {
        return;
    }
    const img = await step(`checking image ${imageUuid} in the local IMGAPI`, () => imgapi.getImage(imageUuid, { reqId: req.reqId }));
    if (!img) {
        throw invalidArgument(`image ${imageUuid} not found in the local IMGAPI`);
    }
}

/**
 * Every network given by name (`{name}` without `uuid`) must exist in NAPI.
 * The payload is not changed: VMAPI still resolves the names, so what is
 * sent stays exactly GetInstancePayload's answer. Skipped without NAPI.
 */
export async function checkNetworks(napi: NapiClient | undefined, req: DeployReq, networks: unknown): Promise<void> {
    if (!napi || !Array.isArray(networks)) {
        return;
    }
    const names = new Set<string>();
    for (const n of networks) {
        if (isPlainObject(n) && typeof n.name === 'string' && n.uuid === undefined) {
            names.add(n.name);
        }
    }
    for (const name of names) {
        const found = await step(`looking up network "${name}" in NAPI`, () => napi.listNetworks({ name, reqId: req.reqId }));
        if (!found.some((n) => n.name === name)) {
            throw invalidArgument(`network "${name}" not found in NAPI`);
        }
    }
}

/**
 * 2.1.2's teardown hook: when the merged params have `teardown-hook`, run
 * `/usr/sbin/zlogin <uuid> "<hook>"` through CNAPI's execute on the VM's
 * server. The VM must exist (409 `no such zone`); CNAPI answering an error
 * is a 500 TeardownHookError; CNAPI unreachable stays a DownstreamError.
 */
export async function runTeardownHook(
    deps: { vmapi: VmapiClient; cnapi?: CnapiClient | undefined },
    req: DeployReq,
    uuid: string,
    mergedParams: Dict,
): Promise<void> {
    const hook = mergedParams['teardown-hook'];
    if (!hook) {
        return;
    }
    const vm = await step(`looking up VM ${uuid} for its teardown-hook`, () => deps.vmapi.getVm(uuid, { reqId: req.reqId }));
    if (!liveVm(vm)) {
        throw invalidArgument(`no such zone: ${uuid}`);
    }
    const server = vm.server_uuid;
    if (!deps.cnapi) {
        throw teardownHookFailed(`teardown-hook of instance ${uuid} cannot run: no CNAPI is configured (cnapi.url)`);
    }
    if (typeof server !== 'string' || server.length === 0) {
        throw teardownHookFailed(`teardown-hook of instance ${uuid} cannot run: VMAPI has no server_uuid for the VM`);
    }
    const text = typeof hook === 'string' ? hook : JSON.stringify(hook);
    const script = `/usr/sbin/zlogin ${uuid} "${text}"`;
    req.log.info({ uuid, server_uuid: server, script }, 'running teardown-hook');
    try {
        await deps.cnapi.execute(server, script, { reqId: req.reqId });
    } catch (err) {
        if (isDownstreamHttpError(err)) {
            throw teardownHookFailed(`teardown-hook of instance ${uuid} failed on server ${server}: ${err.message}`);
        }
        throw inContext(err, `running the teardown-hook of instance ${uuid} on server ${server}`);
    }
}
