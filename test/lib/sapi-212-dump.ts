// SAPI 2.1.2's Moray data (test/fixtures/sapi-2.1.2-moray/dump.json, a copy
// of the dump taken from a real Moray; or $SAPI_212_DUMP): every sapi_* bucket exactly as 2.1.2 wrote it into a
// real Moray. loadDump() puts it into a fake Moray through the Moray
// protocol (createBucket with the dumped index and options, then putObject
// per row, in the dump's _id order); the other helpers compute what SAPI
// must answer from the dumped values themselves.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import type { IndexDef } from '../../lib/stor/buckets.js';
import { connectMoray, createMorayClient, type MorayClient } from '../../lib/stor/moray/client.js';
import type { JsonObject } from '../../lib/stor/store.js';
import { startFakeMoray, type FakeMoray } from './fake-moray.js';

export const DUMP_PATH = process.env.SAPI_212_DUMP ?? fileURLToPath(new URL('../fixtures/sapi-2.1.2-moray/dump.json', import.meta.url));

export interface DumpBucketConfig {
    name: string;
    index: Record<string, IndexDef>;
    pre: unknown[];
    post: unknown[];
    options: { version: number } & Record<string, unknown>;
    mtime: string;
}

export interface DumpRow {
    bucket: string;
    key: string;
    value: JsonObject;
    _id: number;
    _etag: string;
    _mtime: number;
}

export interface Dump {
    moray: string;
    sapi: string;
    dumped_at: string;
    notes: string[];
    buckets: Record<string, { config: DumpBucketConfig; objects: DumpRow[] }>;
}

export interface DumpInstance extends JsonObject {
    uuid: string;
    service_uuid: string;
    type: 'vm' | 'agent';
}

let cached: Dump | null = null;

/** The dump (parsed once; callers must not mutate it: use structuredClone). */
export function readDump(path = DUMP_PATH): Dump {
    if (path === DUMP_PATH && cached) {
        return cached;
    }
    const d = JSON.parse(readFileSync(path, 'utf8')) as Dump;
    if (path === DUMP_PATH) {
        cached = d;
    }
    return d;
}

/**
 * Load the dump into a running fake Moray through the Moray protocol:
 * createBucket(name, {index, options}) with the dumped config, then
 * putObject(bucket, key, value) for each row in _id order.
 */
export async function loadDump(fake: FakeMoray, dump: Dump = readDump()): Promise<{ buckets: number; objects: number }> {
    const client = createMorayClient({ host: fake.host, port: fake.port, connectTimeoutMs: 2000, requestTimeoutMs: 10_000 });
    let objects = 0;
    try {
        await client.waitConnected(5000);
        for (const [name, b] of Object.entries(dump.buckets)) {
            await client.createBucket(name, { index: b.config.index, options: { ...b.config.options } });
            const rows = [...b.objects].sort((x, y) => x._id - y._id);
            for (const row of rows) {
                await client.putObject(name, row.key, structuredClone(row.value));
                objects++;
            }
        }
    } finally {
        await client.close();
    }
    return { buckets: Object.keys(dump.buckets).length, objects };
}

// ---- values

/** The dumped values of one bucket (copies), in _id order. */
export function values<T extends JsonObject = JsonObject>(bucket: string, dump: Dump = readDump()): T[] {
    const b = dump.buckets[bucket];
    if (!b) {
        return [];
    }
    return [...b.objects].sort((x, y) => x._id - y._id).map((r) => structuredClone(r.value) as T);
}

export const applications = (dump?: Dump): JsonObject[] => values('sapi_applications', dump);
export const services = (dump?: Dump): JsonObject[] => values('sapi_services', dump);
export const manifests = (dump?: Dump): JsonObject[] => values('sapi_manifests', dump);
export const instances = (dump?: Dump): DumpInstance[] => values<DumpInstance>('sapi_instances', dump);

function paramOf(inst: JsonObject, key: string): string | undefined {
    const p = inst.params;
    if (p === null || typeof p !== 'object' || Array.isArray(p)) {
        return undefined;
    }
    const v = (p as JsonObject)[key];
    return typeof v === 'string' ? v : undefined;
}

export const serverOf = (inst: JsonObject): string | undefined => paramOf(inst, 'server_uuid');
export const imageOf = (inst: JsonObject): string | undefined => paramOf(inst, 'image_uuid');

function groupBy(list: DumpInstance[], keyOf: (i: DumpInstance) => string | undefined): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const i of list) {
        const k = keyOf(i);
        if (k === undefined) {
            continue;
        }
        const l = out.get(k) ?? [];
        l.push(i.uuid);
        out.set(k, l);
    }
    for (const l of out.values()) {
        l.sort();
    }
    return out;
}

/** Instance uuids (sorted) by params.server_uuid. */
export function instancesByServer(dump?: Dump): Map<string, string[]> {
    return groupBy(instances(dump), serverOf);
}

/** Instance uuids (sorted) by params.image_uuid. */
export function instancesByImage(dump?: Dump): Map<string, string[]> {
    return groupBy(instances(dump), imageOf);
}

export const pairKey = (serviceUuid: string, serverUuid: string): string => `${serviceUuid}/${serverUuid}`;

/** Instance uuids (sorted) by `${service_uuid}/${params.server_uuid}` (pairKey). */
export function instancesByServiceServer(dump?: Dump): Map<string, string[]> {
    return groupBy(instances(dump), (i) => {
        const s = serverOf(i);
        return s === undefined ? undefined : pairKey(i.service_uuid, s);
    });
}

/** Instance uuids (sorted) by service_uuid. */
export function instancesByService(dump?: Dump): Map<string, string[]> {
    return groupBy(instances(dump), (i) => i.service_uuid);
}

/** Agent instances that have no params at all. */
export function agentsWithoutParams(dump?: Dump): DumpInstance[] {
    return instances(dump).filter((i) => i.type === 'agent' && i.params === undefined);
}

/** (service, server) pairs holding more than one instance. */
export function duplicatePairs(dump?: Dump): { service_uuid: string; server_uuid: string; uuids: string[] }[] {
    const out: { service_uuid: string; server_uuid: string; uuids: string[] }[] = [];
    for (const [k, uuids] of instancesByServiceServer(dump)) {
        if (uuids.length > 1) {
            const [service_uuid, server_uuid] = k.split('/') as [string, string];
            out.push({ service_uuid, server_uuid, uuids });
        }
    }
    return out.sort((a, b) => pairKey(a.service_uuid, a.server_uuid).localeCompare(pairKey(b.service_uuid, b.server_uuid)));
}

// ---- response views

/**
 * What SAPI answers for a stored instance: the stored value without the
 * migration marker `exists` and top-level index copies (server_uuid,
 * image_uuid), and without `type` in the v1 view (lib/endpoints/common.ts
 * instanceOmittedKeys).
 */
export function instanceView(value: JsonObject, v2: boolean): JsonObject {
    const out = structuredClone(value);
    for (const k of ['exists', 'server_uuid', 'image_uuid', ...(v2 ? [] : ['type'])]) {
        delete out[k];
    }
    return dropNulls(out);
}

/** What SAPI answers for a stored service (`type` only in the v2 view). */
export function serviceView(value: JsonObject, v2: boolean): JsonObject {
    const out = structuredClone(value);
    if (!v2) {
        delete out.type;
    }
    return dropNulls(out);
}

function dropNulls(o: JsonObject): JsonObject {
    return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined));
}

/** Objects keyed by uuid. */
export function byUuid<T extends JsonObject>(list: T[]): Map<string, T> {
    return new Map(list.map((o) => [String(o.uuid), o]));
}

/**
 * The embedded store as SAPI 2.1.2 left it (no top-level index copies), and
 * a CNAPI view of the same DC: each server's agents as recorded (one entry
 * per agent name, the first instance recorded there), and the agents that
 * registered without params installed on some server that has no agent of
 * their name (`placedAt`).
 */
export async function storeAs212(store: {
    put(bucket: 'sapi_applications' | 'sapi_services' | 'sapi_instances', value: JsonObject): Promise<unknown>;
}): Promise<{
    dump: DumpInstance[];
    svcs: Map<string, JsonObject>;
    nameOf: (i: DumpInstance) => string;
    svcImage: (i: DumpInstance) => string;
    agentsOn: Map<string, { name: string; version: string; uuid: string; image_uuid: string }[]>;
    unplaced: DumpInstance[];
    placedAt: Map<string, string>;
}> {
    const dump = instances();
    const svcs = new Map(services().map((s) => [s.uuid as string, s]));
    for (const a of applications()) await store.put('sapi_applications', a);
    for (const sv of svcs.values()) await store.put('sapi_services', sv);
    for (const i of dump) await store.put('sapi_instances', i);
    const nameOf = (i: DumpInstance): string => (svcs.get(i.service_uuid) as { name: string }).name;
    const svcImage = (i: DumpInstance): string => (svcs.get(i.service_uuid) as { params: { image_uuid: string } }).params.image_uuid;
    const agentsOn = new Map<string, { name: string; version: string; uuid: string; image_uuid: string }[]>();
    const install = (server: string, i: DumpInstance): void => {
        const list = agentsOn.get(server) ?? [];
        if (!list.some((a) => a.name === nameOf(i))) {
            list.push({ name: nameOf(i), version: '1.0.0', uuid: i.uuid, image_uuid: imageOf(i) ?? svcImage(i) });
            agentsOn.set(server, list);
        }
    };
    for (const i of dump) {
        const server = serverOf(i);
        if (i.type === 'agent' && server) install(server, i);
    }
    const unplaced = agentsWithoutParams();
    const placedAt = new Map<string, string>();
    for (const i of unplaced) {
        let server = [...agentsOn.keys()].find((sv) => !(agentsOn.get(sv) ?? []).some((a) => a.name === nameOf(i)));
        if (!server) {
            server = randomUUID();
            agentsOn.set(server, []);
        }
        install(server, i);
        placedAt.set(i.uuid, server);
    }
    return { dump, svcs, nameOf, svcImage, agentsOn, unplaced, placedAt };
}

/** A Moray test server holding the dump, and a client of it; both closed at the end of `t`. */
export async function loadedMoray(t: { teardown(fn: () => unknown): void }): Promise<{ fake: FakeMoray; raw: MorayClient }> {
    const fake = await startFakeMoray();
    await loadDump(fake);
    const raw = await connectMoray({ host: fake.host, port: fake.port });
    t.teardown(async () => {
        await raw.close();
        await fake.close();
    });
    return { fake, raw };
}
