// Copy one bucket between stores (proto → full migration, cache refresh).

import type { BucketName } from './buckets.js';
import { ALL, type JsonObject, type Store } from './store.js';

/**
 * Every object of `bucket` in `from` is put, unconditionally, into `to`,
 * `chunkSize` at a time (so re-running it is harmless). Returns the uuids
 * copied.
 */
export async function copyBucket(from: Store, to: Store, bucket: BucketName, chunkSize: number): Promise<Set<string>> {
    return copyChunks(from, bucket, chunkSize, (values) => to.batch(values.map((value) => ({ op: 'put' as const, bucket, value }))));
}

/**
 * Every object of `bucket` in `from`, in creation order, handed to `write`
 * `chunkSize` at a time; the next chunk is read once `write` is done.
 * Returns the uuids of every object read.
 */
export async function copyChunks(
    from: Store,
    bucket: BucketName,
    chunkSize: number,
    write: (values: JsonObject[]) => Promise<unknown> | void,
): Promise<Set<string>> {
    const copied = new Set<string>();
    for await (const chunk of from.iterate(bucket, ALL, chunkSize)) {
        await write(chunk.map((s) => s.value));
        for (const s of chunk) {
            copied.add(String(s.value.uuid));
        }
    }
    return copied;
}
