// The downstream clients and the deployer of each instance type whose
// Triton services are configured (vm: vmapi; agent: cnapi + imgapi). A
// type without one fails clearly in full mode (NoDeployer).

import type Logger from 'bunyan';

import { CnapiClient } from '../clients/cnapi.js';
import type { DownstreamObservation } from '../clients/http.js';
import { ImgapiClient } from '../clients/imgapi.js';
import { NapiClient } from '../clients/napi.js';
import { VmapiClient } from '../clients/vmapi.js';
import type { SapiConfig } from '../config.js';
import type { Leases } from '../leases/leases.js';
import type { InstanceType } from '../model/types.js';
import { AgentDeployer } from './agent.js';
import type { Deployer, InstanceRecords } from '../model/deployer.js';
import { ServerLocks } from './server-locks.js';
import { VmDeployer } from './vm.js';

export interface Clients {
    vmapi?: VmapiClient;
    cnapi?: CnapiClient;
    imgapi?: ImgapiClient;
    napi?: NapiClient;
}

/** A client for each Triton service the config names; `observe` sees every call (metrics). */
export function createClients(config: SapiConfig, log: Logger, observe?: (o: DownstreamObservation) => void): Clients {
    const common = {
        timeoutMs: config.deploy.downstreamTimeoutMs,
        maxSockets: config.maxHttpSockets,
        ...(observe ? { observe } : {}),
    };
    const clients: Clients = {};
    if (config.vmapi?.url) clients.vmapi = new VmapiClient({ url: config.vmapi.url, ...common, log: log.child({ component: 'vmapi' }) });
    if (config.cnapi?.url) clients.cnapi = new CnapiClient({ url: config.cnapi.url, ...common, log: log.child({ component: 'cnapi' }) });
    if (config.imgapi?.url) clients.imgapi = new ImgapiClient({ url: config.imgapi.url, ...common, log: log.child({ component: 'imgapi' }) });
    if (config.napi?.url) clients.napi = new NapiClient({ url: config.napi.url, ...common, log: log.child({ component: 'napi' }) });
    return clients;
}

export interface DeployerDeps {
    deploy: SapiConfig['deploy'];
    log: Logger;
    records: InstanceRecords;
    clients: Clients;
    /** Where the per-server agent locks are kept (default: this process's memory). */
    leases?: Leases | undefined;
}

export function createDeployers(deps: DeployerDeps): Partial<Record<InstanceType, Deployer>> {
    const { clients, records, deploy, log, leases } = deps;
    const out: Partial<Record<InstanceType, Deployer>> = {};
    if (clients.vmapi) {
        out.vm = new VmDeployer({ deploy, records, vmapi: clients.vmapi, imgapi: clients.imgapi, napi: clients.napi, cnapi: clients.cnapi });
    }
    if (clients.cnapi && clients.imgapi) {
        const agentLog = log.child({ component: 'agent-deployer' });
        const locks = new ServerLocks(leases, agentLog);
        out.agent = new AgentDeployer({ deploy, log: agentLog, records, cnapi: clients.cnapi, imgapi: clients.imgapi, locks });
    }
    return out;
}
