// The model's port to deployment: one Deployer per instance type drives the
// Triton service that makes an instance real (VMAPI for vm, CNAPI → cn-agent
// for agent; lib/deploy implements them). The model calls it in full mode
// only; the deployer records instances through InstanceRecords, which the
// model hands it, so it controls when a record appears or goes.

import type Logger from 'bunyan';

import type { Merged } from './attributes.js';
import type { Application, Dict, Instance, InstanceType, Service } from './types.js';
import type { Stored } from '../stor/store.js';

export interface DeployReq {
    reqId: string;
    log: Logger;
    /** `?async=true`: return once the downstream accepted the work. */
    async: boolean;
    /** The image was already checked for this operation (rollouts check it once). */
    imageChecked?: boolean;
    /** The server was already checked (rollouts check all their servers at once). */
    serverChecked?: boolean;
    /**
     * Aborted when the caller's deadline passes (a rollout item's timeout):
     * the operation stops waiting and rejects with the signal's reason.
     */
    signal?: AbortSignal;
}

export interface InstancePlan {
    /** The instance record as it would be stored (uuid, type, params …). */
    instance: Instance;
    service: Service;
    application: Application;
    merged: Merged;
}

/** What create and upgrade return. */
export interface CreateResult {
    instance: Instance;
    /** VMAPI job (vm) or CNAPI task (agent) id, for async requests. */
    job_uuid?: string;
}

/** Record-level operations a deployer may use (no deployment side effects). */
export interface InstanceRecords {
    get(uuid: string): Promise<Stored<Instance> | null>;
    /** Insert a new record; 409 if the uuid exists. */
    insert(instance: Instance): Promise<Instance>;
    /** Remove a record; absent is fine. */
    remove(uuid: string): Promise<void>;
    /** Set params.image_uuid (and the index) on an existing record. */
    setImage(uuid: string, imageUuid: string): Promise<Instance>;
    /** Shallow-merge keys into params (and the index fields) of an existing record. */
    mergeParams(uuid: string, params: Dict): Promise<Instance>;
    /** Agent self-adoption semantics (one instance per service and server). */
    adoptAgent(instance: Instance): Promise<Instance>;
    /** Agent instances of a service on a server. */
    findOnServer(serviceUuid: string, serverUuid: string): Promise<Instance[]>;
}

export interface Deployer {
    readonly type: InstanceType;
    create(req: DeployReq, plan: InstancePlan): Promise<CreateResult>;
    /** Adoption (`exists: true`): verify the instance is real, then record it. */
    adopt(req: DeployReq, plan: InstancePlan): Promise<Instance>;
    /**
     * The instance after the upgrade (image_uuid changed on success); with
     * `req.async`, the instance as it is and the downstream job/task id.
     */
    upgrade(req: DeployReq, plan: InstancePlan, imageUuid: string): Promise<CreateResult>;
    /** Tear the instance down, then remove its record. */
    destroy(req: DeployReq, plan: InstancePlan): Promise<void>;
    /** Check that an image can be deployed for a service (a clear 4xx if not). */
    checkImage?(req: DeployReq, imageUuid: string, service: Service): Promise<void>;
    /** Why each server cannot take an operation now (absent = ready), in one downstream call. */
    checkServers?(req: DeployReq, servers: string[]): Promise<Map<string, string>>;
}
