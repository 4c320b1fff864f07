// createDeployers(ctx): the deployer of each instance type whose Triton
// services are configured (vm: vmapi; agent: cnapi + imgapi). A type
// without one fails clearly in full mode (NoDeployer).

import { CnapiClient } from '../clients/cnapi.js';
import { ImgapiClient } from '../clients/imgapi.js';
import { NapiClient } from '../clients/napi.js';
import { VmapiClient } from '../clients/vmapi.js';
import type { Ctx } from '../model/context.js';
import { instanceRecords } from '../model/instances.js';
import type { InstanceType } from '../model/types.js';
import { AgentDeployer } from './agent.js';
import type { Deployer } from './deployer.js';
import { VmDeployer } from './vm.js';

export interface Clients {
    vmapi?: VmapiClient;
    cnapi?: CnapiClient;
    imgapi?: ImgapiClient;
    napi?: NapiClient;
}

export function createClients(ctx: Ctx): Clients {
    const c = ctx.config;
    const common = { timeoutMs: c.deploy.downstreamTimeoutMs, maxSockets: c.maxHttpSockets };
    const clients: Clients = {};
    if (c.vmapi?.url) clients.vmapi = new VmapiClient({ url: c.vmapi.url, ...common, log: ctx.log.child({ component: 'vmapi' }) });
    if (c.cnapi?.url) clients.cnapi = new CnapiClient({ url: c.cnapi.url, ...common, log: ctx.log.child({ component: 'cnapi' }) });
    if (c.imgapi?.url) clients.imgapi = new ImgapiClient({ url: c.imgapi.url, ...common, log: ctx.log.child({ component: 'imgapi' }) });
    if (c.napi?.url) clients.napi = new NapiClient({ url: c.napi.url, ...common, log: ctx.log.child({ component: 'napi' }) });
    const metrics = ctx.metrics;
    if (metrics) {
        for (const client of [clients.vmapi, clients.cnapi, clients.imgapi, clients.napi]) {
            if (client) {
                client.http.observe = (o) => metrics.downstreamCall(o);
            }
        }
    }
    return clients;
}

export function createDeployers(ctx: Ctx, clients: Clients = createClients(ctx)): Partial<Record<InstanceType, Deployer>> {
    const records = instanceRecords(ctx);
    const out: Partial<Record<InstanceType, Deployer>> = {};
    if (clients.vmapi) {
        out.vm = new VmDeployer({ ctx, records, vmapi: clients.vmapi, imgapi: clients.imgapi, napi: clients.napi, cnapi: clients.cnapi });
    }
    if (clients.cnapi && clients.imgapi) {
        out.agent = new AgentDeployer({ ctx, records, cnapi: clients.cnapi, imgapi: clients.imgapi });
    }
    return out;
}
