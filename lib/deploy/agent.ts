// The agent deployer: CNAPI → cn-agent installs, upgrades and uninstalls agents.
// (Placeholder until the full-mode agent work lands: every call is a clear 5xx.)

import type { CnapiClient } from '../clients/cnapi.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import { noDeployer } from '../errors.js';
import type { Ctx } from '../model/context.js';
import type { Instance } from '../model/types.js';
import type { CreateResult, Deployer, InstanceRecords } from './deployer.js';

export interface AgentDeployerOptions {
    ctx: Ctx;
    records: InstanceRecords;
    cnapi: CnapiClient;
    imgapi: ImgapiClient;
}

export class AgentDeployer implements Deployer {
    readonly type = 'agent' as const;
    constructor(readonly opts: AgentDeployerOptions) {}
    create(): Promise<CreateResult> {
        return Promise.reject(noDeployer("agent"));
    }
    adopt(): Promise<Instance> {
        return Promise.reject(noDeployer("agent"));
    }
    upgrade(): Promise<Instance> {
        return Promise.reject(noDeployer("agent"));
    }
    destroy(): Promise<void> {
        return Promise.reject(noDeployer("agent"));
    }
}
