// Where lease records live: the store's part of leases (lib/leases/ holds
// the coordination on top). In memory for the embedded store (one process
// per store), or records in Moray's `sapi_leases` bucket (stor/moray).
// Writes are conditional on the version tag last read, so of two writers
// racing for a key exactly one wins.

import { EtagConflictError, NotFoundError } from './errors.js';

/** What a held lease says about its holder. */
export interface LeaseRecord {
    /** e.g. 'server/<server_uuid>' or 'rollout/<rollout_uuid>'. */
    key: string;
    /** The holding SAPI process's owner id (Leases.owner). */
    owner: string;
    /** Human text, e.g. 'upgrade of cn-agent to image X'. */
    operation: string;
    /** ISO time the lease was taken. */
    acquired_at: string;
    /** ISO time after which anyone may take it. */
    expires_at: string;
}

/** A stored lease and its version tag. */
export interface StoredLease {
    record: LeaseRecord;
    etag: string;
}

/**
 * Where lease records live. Writes are conditional: `put` with etag null
 * requires that no record exists, with a string that the stored tag equals
 * it (else EtagConflictError); `del` requires the tag (EtagConflictError,
 * or NotFoundError when the record is gone). Failures to reach the store
 * are StoreUnavailableError.
 */
export interface LeaseBackend {
    get(key: string): Promise<StoredLease | null>;
    put(record: LeaseRecord, etag: string | null): Promise<string>;
    del(key: string, etag: string): Promise<void>;
}

/** The records of one process, for the embedded store. */
export class MemoryLeaseBackend implements LeaseBackend {
    private readonly records = new Map<string, StoredLease>();
    private version = 0;

    get(key: string): Promise<StoredLease | null> {
        const cur = this.records.get(key);
        return Promise.resolve(cur ? { record: { ...cur.record }, etag: cur.etag } : null);
    }

    put(record: LeaseRecord, etag: string | null): Promise<string> {
        const cur = this.records.get(record.key);
        if ((cur?.etag ?? null) !== etag) {
            return Promise.reject(new EtagConflictError('sapi_leases', record.key, etag, cur?.etag ?? null));
        }
        const next = `m${++this.version}`;
        this.records.set(record.key, { record: { ...record }, etag: next });
        return Promise.resolve(next);
    }

    del(key: string, etag: string): Promise<void> {
        const cur = this.records.get(key);
        if (!cur) {
            return Promise.reject(new NotFoundError('sapi_leases', key));
        }
        if (cur.etag !== etag) {
            return Promise.reject(new EtagConflictError('sapi_leases', key, etag, cur.etag));
        }
        this.records.delete(key);
        return Promise.resolve();
    }
}
