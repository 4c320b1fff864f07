// NAPI client: network lookup by name, to reject an unknown network name
// before a VMAPI job fails on it (SAPI 2.1.2 made no NAPI call and left the
// name to VMAPI).

import { ServiceClient, type ServiceClientOptions } from './http.js';

export interface NapiNetwork {
    uuid: string;
    name: string;
    vlan_id?: number;
    subnet?: string;
    nic_tag?: string;
    owner_uuids?: string[];
    fabric?: boolean;
    [key: string]: unknown;
}

export type NapiClientOptions = ServiceClientOptions;

export interface ListNetworksOptions {
    name?: string;
    reqId?: string | undefined;
}

export class NapiClient extends ServiceClient {
    constructor(opts: NapiClientOptions) {
        super('NAPI', opts);
    }

    /** GET /networks[?name=] → array (empty when no network has that name). */
    async listNetworks(opts: ListNetworksOptions = {}): Promise<NapiNetwork[]> {
        const res = await this.http.get<NapiNetwork[]>('/networks', { query: { name: opts.name }, reqId: opts.reqId });
        return Array.isArray(res.body) ? res.body : [];
    }
}
