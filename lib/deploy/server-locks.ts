// One agent operation per server at a time (cn-agent runs a server's agent
// tasks one by one, so a second task would only queue). A second request gets 409
// OperationInProgress naming the running operation.

import { operationInProgress } from '../errors.js';

export interface HeldLock {
    server: string;
    operation: string;
    since: Date;
}

export class ServerLocks {
    private readonly held = new Map<string, HeldLock>();

    /** Take the server's lock or throw 409 naming who holds it. */
    acquire(server: string, operation: string): () => void {
        const cur = this.held.get(server);
        if (cur) {
            throw operationInProgress(`server ${server} is busy: ${cur.operation} (running since ${cur.since.toISOString()}); try again when it finishes`);
        }
        const lock = { server, operation, since: new Date() };
        this.held.set(server, lock);
        let released = false;
        return () => {
            if (!released && this.held.get(server) === lock) {
                this.held.delete(server);
            }
            released = true;
        };
    }

    /** Wait for the lock instead of failing (rollouts queue per server). */
    async acquireWait(server: string, operation: string, pollMs = 50, signal?: AbortSignal): Promise<() => void> {
        for (;;) {
            signal?.throwIfAborted();
            if (!this.held.has(server)) {
                return this.acquire(server, operation);
            }
            await new Promise((r) => setTimeout(r, pollMs));
        }
    }

    current(server: string): HeldLock | undefined {
        return this.held.get(server);
    }
}
