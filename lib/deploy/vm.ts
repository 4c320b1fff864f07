// The vm deployer: VMAPI provisions, reprovisions and destroys zones.
// (Placeholder until the full-mode VM work lands: every call is a clear 5xx.)

import type { CnapiClient } from '../clients/cnapi.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import type { NapiClient } from '../clients/napi.js';
import type { VmapiClient } from '../clients/vmapi.js';
import { noDeployer } from '../errors.js';
import type { Ctx } from '../model/context.js';
import type { Instance } from '../model/types.js';
import type { CreateResult, Deployer, InstanceRecords } from './deployer.js';

export interface VmDeployerOptions {
    ctx: Ctx;
    records: InstanceRecords;
    vmapi: VmapiClient;
    imgapi?: ImgapiClient | undefined;
    napi?: NapiClient | undefined;
    cnapi?: CnapiClient | undefined;
}

export class VmDeployer implements Deployer {
    readonly type = 'vm' as const;
    constructor(readonly opts: VmDeployerOptions) {}
    create(): Promise<CreateResult> {
        return Promise.reject(noDeployer('vm'));
    }
    adopt(): Promise<Instance> {
        return Promise.reject(noDeployer('vm'));
    }
    upgrade(): Promise<Instance> {
        return Promise.reject(noDeployer('vm'));
    }
    destroy(): Promise<void> {
        return Promise.reject(noDeployer('vm'));
    }
}
