// Small builders for test data over the HTTP API.

import { randomUUID } from 'node:crypto';

import type { Harness } from './harness.js';

export const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = any;

export async function anApplication(h: Harness, extra: Record<string, unknown> = {}): Promise<Obj> {
    const r = await h.call('POST', '/applications', { body: { name: 'sdc', owner_uuid: OWNER, ...extra } });
    if (r.status !== 200) {
        throw new Error(`createApplication: ${r.status} ${r.text}`);
    }
    return r.body;
}

export async function aService(h: Harness, appUuid: string, extra: Record<string, unknown> = {}): Promise<Obj> {
    const r = await h.call('POST', '/services', {
        body: { name: `svc-${randomUUID().slice(0, 8)}`, application_uuid: appUuid, ...extra },
        version: '~2',
    });
    if (r.status !== 200) {
        throw new Error(`createService: ${r.status} ${r.text}`);
    }
    return r.body;
}

export async function anAgentService(h: Harness, appUuid: string, name = 'vm-agent', image = randomUUID()): Promise<Obj> {
    return aService(h, appUuid, { name, type: 'agent', params: { image_uuid: image } });
}

export async function anInstance(h: Harness, svcUuid: string, extra: Record<string, unknown> = {}): Promise<Obj> {
    const r = await h.call('POST', '/instances', { body: { service_uuid: svcUuid, ...extra }, version: '~2' });
    if (r.status !== 200) {
        throw new Error(`createInstance: ${r.status} ${r.text}`);
    }
    return r.body;
}

export async function aManifest(h: Harness, extra: Record<string, unknown> = {}): Promise<Obj> {
    const r = await h.call('POST', '/manifests', {
        body: { name: 'registrar', path: '/opt/smartdc/registrar/etc/config.json', template: '{{{REGISTRAR}}}', ...extra },
    });
    if (r.status !== 200) {
        throw new Error(`createManifest: ${r.status} ${r.text}`);
    }
    return r.body;
}
