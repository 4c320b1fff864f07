// Concurrent writes of the Moray store sharing one Moray `batch` (one
// PostgreSQL transaction), the way concurrent writes of the embedded store
// share one commit (sqlite/group-commit.ts).
//
// A write (a put, a delete, a store batch) is a member. Members that arrive
// in the same turn of the event loop, or while earlier groups are in flight
// (at most `maxInFlight` at once), are sent together as one batch. A group
// of one is sent exactly as the write would be sent alone (putObject,
// deleteObject, batch). Every member is acknowledged only once Moray has
// answered the batch that holds it.
//
// One failing member never fails the others: a Moray batch is all or
// nothing, and a server's error reply means that nothing of it was
// committed. The member the error names (its bucket and key) is then sent
// alone, which answers it exactly as it would have been answered without
// the group, and the others are sent again together; when the error names
// none of them, each is sent alone. When Moray's answer never came (a
// dropped connection, a timeout), whether the batch was committed is not
// known: every member gets that error, as each would have alone.
//
// Members writing the same object never share a group, and a group is not
// sent while a group in flight writes one of its objects: writes of one
// object reach Moray in the order they were made, each put's etag is the
// one Moray gave its own write, and a failure names one member.

import type { MorayBatchRequest, MorayClient } from './client.js';
import { serverErrorOf, translateError } from './error-map.js';
import { StoreUnavailableError } from '../errors.js';

export interface WriteGroupOptions {
    /** Groups in flight at once (default 2); writes made meanwhile wait and join the next. */
    maxInFlight?: number | undefined;
    /** Moray requests in one group at most (default 200); a larger write goes alone. */
    maxRequests?: number | undefined;
}

/** One write: its requests, and how it is sent alone. */
export interface GroupWrite {
    requests: MorayBatchRequest[];
    /** The write sent on its own; a put answers its etag. */
    alone(client: MorayClient): Promise<string | undefined>;
    /** For a put: the request whose etag the write answers. */
    put?: { bucket: string; key: string } | undefined;
}

interface Member extends GroupWrite {
    keys: string[];
    resolve(etag: string | undefined): void;
    reject(err: unknown): void;
}

interface Group {
    members: Member[];
    keys: Set<string>;
    size: number;
}

function keyOf(bucket: string, key: string): string {
    return `${bucket}\u0000${key}`;
}

/** The etag Moray gave the put of `bucket`/`key` in a batch reply. */
function etagIn(reply: unknown, bucket: string, key: string): string | undefined {
    const etags = (reply as { etags?: unknown } | null)?.etags;
    if (!Array.isArray(etags)) {
        return undefined;
    }
    for (const e of etags as { bucket?: unknown; key?: unknown; etag?: unknown }[]) {
        if (e?.bucket === bucket && e.key === key && typeof e.etag === 'string') {
            return e.etag;
        }
    }
    return undefined;
}

export class WriteGroups {
    private readonly pending: Group[] = [];
    private readonly flying = new Set<string>();
    private inFlight = 0;
    private scheduled = false;
    private readonly maxInFlight: number;
    private readonly maxRequests: number;
    /** Moray batch RPCs that carried more than one write (for tests and metrics). */
    shared = 0;

    /** Writes waiting for a group in flight to finish before theirs is sent. */
    get waiting(): number {
        return this.pending.reduce((n, g) => n + g.members.length, 0);
    }

    constructor(
        private readonly client: () => MorayClient,
        opts: WriteGroupOptions = {},
    ) {
        this.maxInFlight = Math.max(1, opts.maxInFlight ?? 2);
        this.maxRequests = Math.max(1, opts.maxRequests ?? 200);
    }

    /** Resolves with the put's etag (undefined for other writes) once Moray holds the write. */
    write(w: GroupWrite): Promise<string | undefined> {
        return new Promise((resolve, reject) => {
            const keys = [...new Set(w.requests.map((r) => keyOf(r.bucket, r.key)))];
            const member: Member = { ...w, keys, resolve, reject };
            const last = this.pending[this.pending.length - 1];
            if (last && last.size + w.requests.length <= this.maxRequests && !keys.some((k) => last.keys.has(k))) {
                last.members.push(member);
                last.size += w.requests.length;
                for (const k of keys) {
                    last.keys.add(k);
                }
            } else {
                this.pending.push({ members: [member], keys: new Set(keys), size: w.requests.length });
            }
            this.schedule();
        });
    }

    private schedule(): void {
        if (!this.scheduled) {
            this.scheduled = true;
            setImmediate(() => {
                this.scheduled = false;
                this.flush();
            });
        }
    }

    /** Send the waiting groups, in order, as far as the limits allow. */
    private flush(): void {
        for (;;) {
            const next = this.pending[0];
            if (!next || this.inFlight >= this.maxInFlight || [...next.keys].some((k) => this.flying.has(k))) {
                return;
            }
            this.pending.shift();
            this.inFlight++;
            for (const k of next.keys) {
                this.flying.add(k);
            }
            void this.send(next.members)
                // send() settles every member; should it throw all the same, none is left waiting.
                .catch((err: unknown) => {
                    for (const m of next.members) {
                        m.reject(err);
                    }
                })
                .finally(() => {
                    this.inFlight--;
                    for (const k of next.keys) {
                        this.flying.delete(k);
                    }
                    this.flush();
                });
        }
    }

    /** Send `members` as one batch (alone when only one); settles every member. */
    private async send(members: Member[]): Promise<void> {
        if (members.length === 1) {
            await this.sendAlone(members[0] as Member);
            return;
        }
        let client: MorayClient;
        let reply: unknown;
        try {
            client = this.client();
            this.shared++;
            reply = await client.batchReply(members.flatMap((m) => m.requests));
        } catch (err) {
            await this.failed(members, err);
            return;
        }
        for (const m of members) {
            if (!m.put) {
                m.resolve(undefined);
                continue;
            }
            const etag = etagIn(reply, m.put.bucket, m.put.key);
            if (etag === undefined) {
                m.reject(new StoreUnavailableError(`moray batch ${m.put.bucket}/${m.put.key}: reply has no etag`));
            } else {
                m.resolve(etag);
            }
        }
    }

    private async sendAlone(m: Member): Promise<void> {
        try {
            m.resolve(await m.alone(this.client()));
        } catch (err) {
            m.reject(err);
        }
    }

    /** The shared batch failed: find out which member it was. */
    private async failed(members: Member[], err: unknown): Promise<void> {
        const server = serverErrorOf(err);
        if (!server) {
            // No answer: committed or not is unknown; each gets what it would have alone.
            const e = translateError(err);
            for (const m of members) {
                m.reject(e);
            }
            return;
        }
        // Rolled back. The member the error names alone; the others together again.
        const c = server.context ?? {};
        const named = typeof c.bucket === 'string' && typeof c.key === 'string' ? keyOf(c.bucket, c.key) : null;
        const culprit = named === null ? undefined : members.find((m) => m.keys.includes(named));
        if (!culprit) {
            await Promise.all(members.map((m) => this.sendAlone(m)));
            return;
        }
        await Promise.all([this.sendAlone(culprit), this.send(members.filter((m) => m !== culprit))]);
    }
}
