// Agent self-adoption: what an agent's own registration (its postinstall,
// or a reinstall) does to SAPI's records.

import { invalidArgument } from '../errors.js';
import { EtagConflictError, NotFoundError } from '../stor/errors.js';
import type { BatchOp, Stored } from '../stor/store.js';
import { copyInto, isPlainObject } from './attributes.js';
import { onServer, withIndexes, type RecordDeps } from './instance-records.js';
import { BUCKET_OF, compact, find, storeError } from './objects.js';
import { KeyedQueue } from './keyed-queue.js';
import type { Dict, Instance } from './types.js';

/**
 * Adoptions of one (service, server) run one after another in this process:
 * each replaces what it read, so two running at once could both insert.
 */
const adoptions = new KeyedQueue();

/**
 * Agent self-adoption: one instance per (service, server). The same uuid is
 * an upsert of params; a new uuid replaces every other instance of that
 * service on the server (SAPI 2.1.2 could leave several), carrying their
 * metadata and manifests over. An agent that does not say its server (older
 * agents register with just a service and a uuid) is recorded "unplaced":
 * an upsert by uuid, replacing nothing. Never calls CNAPI and never waits
 * for a server's install lock; it only waits for another adoption of the
 * same service on the same server to be written.
 */
export async function adoptAgent(deps: RecordDeps, inst: Instance): Promise<Instance> {
    const server = serverOf(inst);
    if (server === null) {
        return adoptOnce(deps, inst, null);
    }
    return adoptions.run(keyOf(inst.service_uuid, server), () => adoptOnce(deps, inst, server));
}

function serverOf(inst: Instance): string | null {
    const given = isPlainObject(inst.params) ? inst.params.server_uuid : undefined;
    return typeof given === 'string' && given !== '' ? given : null;
}

function keyOf(serviceUuid: string, server: string): string {
    return `${serviceUuid}/${server}`;
}

/** What an adoption reads before it writes: the instance, and its service's others on the server. */
interface AdoptionReads {
    existing: Stored<Instance> | null;
    siblings: Stored<Instance>[];
}

/**
 * What the adoption of `uuid` reads. `first`, for a placed agent's first
 * attempt: only the instances of its service on its server, where an
 * agent registering again finds its own record; the instance is not looked
 * up elsewhere, since an instance of that uuid anywhere else fails the
 * write (a put on a uuid believed absent is conditional on its absence),
 * and the next attempt reads both.
 */
async function readFor(deps: RecordDeps, uuid: string, serviceUuid: string, server: string | null, first = false): Promise<AdoptionReads> {
    if (first && server !== null) {
        const found = await onServer(deps, serviceUuid, server);
        return { existing: found.find((s) => s.value.uuid === uuid) ?? null, siblings: found.filter((s) => s.value.uuid !== uuid) };
    }
    const [existing, siblings] = await Promise.all([find<Instance>(deps.store, 'instance', uuid), server === null ? [] : onServer(deps, serviceUuid, server)]);
    return { existing, siblings: siblings.filter((s) => s.value.uuid !== uuid) };
}

/** An adoption begun before the caller knows it will adopt (see beginAdoption). */
export interface PendingAdoption {
    /** Adopt `inst` (of the uuid, service and server begun with); the result of adoptAgent. */
    finish(inst: Instance): Promise<Instance>;
    /** Not adopting after all (no-op once finished): the next adoption of the pair may run. */
    cancel(): void;
}

/**
 * Start an agent's adoption of `uuid` on (service, server) before the
 * caller has read what it needs to decide on it (its service and
 * application): the adoption takes its turn among those of the same pair
 * at once, and in its turn makes its reads, while the caller reads the
 * rest. The caller then calls finish() (the adoption writes) or cancel();
 * until it does, later adoptions of that pair wait.
 */
export function beginAdoption(deps: RecordDeps, uuid: string, serviceUuid: string, server: string): PendingAdoption {
    let decide!: (inst: Instance | null) => void;
    const decided = new Promise<Instance | null>((resolve) => {
        decide = resolve;
    });
    const result = adoptions.run(keyOf(serviceUuid, server), async () => {
        const reads = readFor(deps, uuid, serviceUuid, server, true);
        reads.catch(() => undefined);
        const inst = await decided;
        if (!inst) {
            return null;
        }
        return adoptOnce(deps, inst, server, reads);
    });
    return {
        finish: async (inst) => {
            if (inst.uuid !== uuid || inst.service_uuid !== serviceUuid || serverOf(inst) !== server) {
                decide(null);
                return adoptAgent(deps, inst);
            }
            decide(inst);
            return (await result) as Instance;
        },
        cancel: () => decide(null),
    };
}

/** `first`: the reads of the first attempt, made already in this adoption's turn. */
async function adoptOnce(deps: RecordDeps, inst: Instance, server: string | null, first?: Promise<AdoptionReads>): Promise<Instance> {
    for (let attempt = 0; ; attempt++) {
        const { existing, siblings } = await (attempt === 0
            ? (first ?? readFor(deps, inst.uuid, inst.service_uuid, server, true))
            : readFor(deps, inst.uuid, inst.service_uuid, server));
        if (existing && (existing.value.type !== 'agent' || existing.value.service_uuid !== inst.service_uuid)) {
            throw invalidArgument(`instance already exists: ${inst.uuid}`);
        }

        const base: Instance = existing ? existing.value : { uuid: inst.uuid, service_uuid: inst.service_uuid, type: 'agent' };
        const params: Dict = {};
        const metadata: Dict = {};
        const manifests: Dict = {};
        for (const s of siblings) {
            copyInto(params, s.value.params);
            copyInto(metadata, s.value.metadata);
            copyInto(manifests, s.value.manifests);
        }
        copyInto(params, base.params);
        copyInto(params, inst.params);
        copyInto(metadata, base.metadata);
        copyInto(metadata, inst.metadata);
        copyInto(manifests, base.manifests);
        copyInto(manifests, inst.manifests);
        const next = withIndexes(
            compact<Instance>({
                uuid: inst.uuid,
                service_uuid: inst.service_uuid,
                params,
                metadata: Object.keys(metadata).length > 0 || base.metadata ? metadata : undefined,
                manifests: Object.keys(manifests).length > 0 || base.manifests ? (manifests as Record<string, string>) : undefined,
                master: base.master ?? inst.master,
                type: 'agent',
            }),
        );
        const ops: BatchOp[] = siblings.map((s) => ({ op: 'del', bucket: BUCKET_OF.instance, uuid: s.value.uuid, etag: s.etag }));
        ops.push({ op: 'put', bucket: BUCKET_OF.instance, value: next, etag: existing ? existing.etag : null });
        try {
            await deps.store.batch(ops);
            if (siblings.length > 0) {
                deps.log.info(
                    { replaced: siblings.map((s) => s.value.uuid), uuid: inst.uuid, server_uuid: server },
                    'agent self-adoption replaced the server instance',
                );
            }
            return next;
        } catch (err) {
            if ((err instanceof EtagConflictError || err instanceof NotFoundError) && attempt < 20) {
                continue;
            }
            throw storeError(err, 'instance', inst.uuid);
        }
    }
}
