// Fake NAPI: GET /networks[?name=] (an unknown name gives an empty list).

import { randomUUID } from 'node:crypto';

import type { NapiNetwork } from '../../lib/clients/napi.js';
import { FakeHttpServer, clone, type FakeLog } from './fake-http.js';

export interface FakeNapiState {
    networks: Map<string, NapiNetwork>;
}

export interface FakeNapiOptions {
    log?: FakeLog;
    networks?: (Partial<NapiNetwork> & { name: string })[];
}

export class FakeNapi extends FakeHttpServer {
    readonly state: FakeNapiState = { networks: new Map() };

    constructor(opts: FakeNapiOptions = {}) {
        super({ name: 'NAPI', log: opts.log });
        for (const n of opts.networks ?? []) {
            this.addNetwork(n);
        }
        this.route('GET', '/networks', (req) => {
            const name = req.query['name'];
            const list = [...this.state.networks.values()].filter((n) => name === undefined || n.name === name);
            return { status: 200, body: clone(list) };
        });
    }

    addNetwork(n: Partial<NapiNetwork> & { name: string }): NapiNetwork {
        const net: NapiNetwork = {
            uuid: randomUUID(),
            vlan_id: 0,
            subnet: '10.99.99.0/24',
            netmask: '255.255.255.0',
            nic_tag: n.name,
            mtu: 1500,
            fabric: false,
            ...n,
        };
        this.state.networks.set(net.uuid, net);
        return net;
    }
}

export async function startFakeNapi(opts: FakeNapiOptions = {}): Promise<FakeNapi> {
    return new FakeNapi(opts).start();
}
