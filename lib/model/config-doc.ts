// GetConfig: the document config-agent renders manifests from (the merged
// manifests as full objects, the merged metadata plus SERVER_UUID, ZONE_UUID
// and INSTANCE_UUID, without user-script), and its ETag.

import { createHash } from 'node:crypto';

import { noSuch } from '../errors.js';
import { copyInto, mergeAttributes } from './attributes.js';
import type { Ctx, ParentReader } from './context.js';
import { find, mustGet } from './objects.js';
import type { Application, Dict, Instance, Manifest, Service } from './types.js';

export interface ConfigDoc {
    manifests: Manifest[];
    metadata: Dict;
}

/**
 * Where an assembly reads the objects a document is made of besides its
 * instance: the store, or a cache of them (config-cache.ts). Each answers
 * the stored object, or null when there is none.
 */
export interface SourceReader {
    /** The instance; absent: read from ctx.store. */
    instance?(uuid: string): Promise<Instance | null>;
    service(uuid: string): Promise<Service | null>;
    application(uuid: string): Promise<Application | null>;
    manifest(uuid: string): Promise<Manifest | null>;
}

/** Reads every source from ctx.store. */
export function storeReader(ctx: Ctx): SourceReader {
    return {
        service: async (uuid) => (await find<Service>(ctx.store, 'service', uuid))?.value ?? null,
        application: async (uuid) => (await find<Application>(ctx.store, 'application', uuid))?.value ?? null,
        manifest: async (uuid) => (await find<Manifest>(ctx.store, 'manifest', uuid))?.value ?? null,
    };
}

/** A service and its application; a missing one is a 404 naming it. */
export async function loadParents(
    ctx: Ctx,
    serviceUuid: string,
    reader: ParentReader = storeReader(ctx),
): Promise<{ service: Service; application: Application }> {
    const service = await reader.service(serviceUuid);
    if (!service) {
        throw noSuch('service', serviceUuid);
    }
    const application = await reader.application(service.application_uuid);
    if (!application) {
        throw noSuch('application', service.application_uuid);
    }
    return { service, application };
}

/** The uuids a config document was assembled from, besides its instance's. */
export interface ConfigSources {
    service: string;
    application: string;
    /** The manifests of the merged map, each once. */
    manifests: string[];
}

export async function buildConfig(ctx: Ctx, uuid: string): Promise<ConfigDoc> {
    return (await assembleConfig(ctx, uuid)).doc;
}

/**
 * The GetConfig document of an instance, and what it was assembled from.
 * The instance comes from ctx.store; the rest from `reader`, the manifests
 * all at once.
 */
export async function assembleConfig(ctx: Ctx, uuid: string, reader: SourceReader = storeReader(ctx)): Promise<{ doc: ConfigDoc; sources: ConfigSources }> {
    const inst = (reader.instance ? await reader.instance(uuid) : null) ?? (await mustGet<Instance>(ctx.store, 'instance', uuid)).value;
    const { service, application } = await loadParents(ctx, inst.service_uuid, reader);
    const merged = mergeAttributes(application, service, inst);

    const wanted = [...new Set(Object.values(merged.manifests))];
    const got = await Promise.all(wanted.map((muuid) => reader.manifest(muuid)));
    const byUuid = new Map<string, Manifest>();
    for (const [i, muuid] of wanted.entries()) {
        const m = got[i];
        if (!m) {
            throw noSuch('manifest', muuid);
        }
        byUuid.set(muuid, m);
    }
    const manifests = Object.values(merged.manifests).map((muuid) => byUuid.get(muuid) as Manifest);

    const metadata = copyInto({}, merged.metadata);
    delete metadata['user-script'];
    metadata.SERVER_UUID = merged.params.server_uuid || ctx.config.server_uuid || ctx.config.serverUuid;
    metadata.ZONE_UUID = inst.uuid;
    metadata.INSTANCE_UUID = inst.uuid;
    return {
        doc: { manifests, metadata },
        sources: { service: inst.service_uuid, application: service.application_uuid, manifests: wanted },
    };
}

/**
 * The GetConfig ETag: sha1 of the JSON of the sorted "path,value" strings of
 * the flattened doc (array elements keep their parent's path, nulls add
 * nothing), so key and manifest order do not change it.
 */
export function configEtag(doc: unknown): string {
    const out: string[] = [];
    const walk = (v: unknown, path: string | null): void => {
        if (v === null || v === undefined) {
            return;
        }
        if (Array.isArray(v)) {
            for (const e of v) {
                walk(e, path);
            }
            return;
        }
        if (typeof v === 'object') {
            for (const key of Object.keys(v)) {
                walk((v as Dict)[key], path === null ? key : `${path},${key}`);
            }
            return;
        }
        // Scalars from JSON: template conversion is String(v) (JS number formatting).
        out.push(`${path ?? ''},${v as string}`);
    };
    walk(doc, null);
    out.sort();
    return createHash('sha1').update(JSON.stringify(out), 'utf8').digest('hex');
}
