// One agent operation per server at a time (cn-agent runs a server's agent
// tasks one by one, so a second task would only queue). A second request gets 409
// OperationInProgress naming the running operation.
//
// The lock of a server is the lease `server/<uuid>` (leases/leases.ts): kept
// in this process's memory on the embedded store, and in Moray when several
// SAPIs share one, so that no two of them run agent tasks on one server at
// once. A held lock is renewed until it is given back, however long the
// operation takes. A lock that cannot be taken because the store does not
// answer is a 503 StoreUnavailable, never a pass.

import type Logger from 'bunyan';

import { operationInProgress, storeUnavailable } from '../errors.js';
import { memoryLeases, type Leases } from '../leases/leases.js';
import type { LeaseRecord } from '../stor/lease-backend.js';
import { StoreUnavailableError } from '../stor/errors.js';

/** Default lease TTL of a ServerLocks built without Leases. */
const DEFAULT_TTL_MS = 30_000;

export function serverLockKey(server: string): string {
    return `server/${server}`;
}

export class ServerLocks {
    readonly leases: Leases;

    constructor(
        leases?: Leases,
        private readonly log?: Logger,
    ) {
        this.leases = leases ?? memoryLeases(DEFAULT_TTL_MS);
    }

    /** Take the server's lock, or throw 409 naming who holds it (503 if the store fails). */
    async acquire(server: string, operation: string): Promise<() => void> {
        const release = await this.tryAcquire(server, operation);
        if (release) {
            return release;
        }
        const cur = await this.current(server).catch(() => null);
        const who = cur ? `${cur.operation} (running since ${cur.acquired_at})` : 'another operation';
        throw operationInProgress(`server ${server} is busy: ${who}; try again when it finishes`);
    }

    /** Wait for the lock instead of failing (rollouts queue per server). */
    async acquireWait(server: string, operation: string, pollMs = 50, signal?: AbortSignal): Promise<() => void> {
        for (;;) {
            signal?.throwIfAborted();
            const release = await this.tryAcquire(server, operation);
            if (release) {
                return release;
            }
            await new Promise((r) => setTimeout(r, pollMs));
        }
    }

    /** Who holds the server's lock now (null: nobody). */
    async current(server: string): Promise<LeaseRecord | null> {
        try {
            return await this.leases.holder(serverLockKey(server));
        } catch (err) {
            throw this.unavailable(server, err);
        }
    }

    /** The lock's release function, or null when someone holds it. */
    private async tryAcquire(server: string, operation: string): Promise<(() => void) | null> {
        let handle;
        try {
            handle = await this.leases.tryAcquire(serverLockKey(server), operation);
        } catch (err) {
            throw this.unavailable(server, err);
        }
        if (!handle) {
            return null;
        }
        const stop = this.leases.keepAlive(handle);
        const onLost = (): void => {
            this.log?.warn({ server, operation }, 'lost the server lock while its operation runs (the store did not answer in time)');
        };
        handle.lost.addEventListener('abort', onLost, { once: true });
        let released = false;
        return () => {
            if (released) {
                return;
            }
            released = true;
            stop();
            handle.lost.removeEventListener('abort', onLost);
            handle.release().catch((err: unknown) => {
                // The record expires on its own.
                this.log?.warn({ err, server }, 'could not give the server lock back; it expires by itself');
            });
        };
    }

    private unavailable(server: string, err: unknown): unknown {
        if (err instanceof StoreUnavailableError) {
            return storeUnavailable(`cannot take the lock of server ${server}: ${err.message}`, err);
        }
        return err;
    }
}
