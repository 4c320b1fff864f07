// Copy one bucket between stores (proto → full migration, cache refresh).

import type { BucketName } from './buckets.js';
import { ALL, type Store } from './store.js';

/**
 * Every object of `bucket` in `from` is put, unconditionally, into `to`,
 * `chunkSize` at a time (so re-running it is harmless). Returns the uuids
 * copied.
 */
export async function copyBucket(from: Store, to: Store, bucket: BucketName, chunkSize: number): Promise<Set<string>> {
    const copied = new Set<string>();
    for await (const chunk of from.iterate(bucket, ALL, chunkSize)) {
        await to.batch(chunk.map((s) => ({ op: 'put' as const, bucket, value: s.value })));
        for (const s of chunk) {
            copied.add(String(s.value.uuid));
        }
    }
    return copied;
}
