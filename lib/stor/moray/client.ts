// The Moray client, as the Moray store gets it: created here from the
// connect options (host and port, or DNS SRV discovery; SAPI 2.1.2's
// reconnect policy; a silent logger unless given one), connecting in the
// background or waited for. Its calls are rpc.ts's and the mapping of
// Moray's errors error-map.ts's; both are exported from here too, so that
// the rest of the store imports the client from this one place.

import { createRequire } from 'node:module';

import bunyan from 'bunyan';

import { MorayClient, type RawMorayClient } from './rpc.js';

export { MorayRequestError, morayErrorName, serverErrorOf, translateError, type ErrorContext } from './error-map.js';
export {
    MorayClient,
    type FindOptions,
    type MorayBatchRequest,
    type MorayBucket,
    type MorayBucketConfig,
    type MorayObject,
    type MoraySort,
    type ReindexResult,
    type WriteOptions,
} from './rpc.js';

const require = createRequire(import.meta.url);
const moray = require('moray') as { createClient(opts: object): RawMorayClient };

export type MorayLogger = bunyan;

export interface MorayConnectOptions {
    /** IP address or hostname (A records); with `port`. */
    host?: string | undefined;
    port?: number | undefined;
    /** DNS SRV discovery instead of host/port. */
    srvDomain?: string | undefined;
    /** Passed to the moray client as is (not combinable with `retry`). */
    cueballOptions?: Record<string, unknown> | undefined;
    /** TCP connect timeout, and how long connectMoray() waits (default 1000 / 10000). */
    connectTimeoutMs?: number | undefined;
    /**
     * Reconnect policy (moray client "legacy" options; default 10 attempts,
     * 100 ms doubling to 6 s, then every 6 s forever); ignored with cueballOptions.
     */
    retry?: { retries?: number; minTimeout?: number; maxTimeout?: number } | undefined;
    /** Fail a request that has not completed after this long (default 30 s; 0 = never). */
    requestTimeoutMs?: number | undefined;
    log?: MorayLogger | undefined;
}

function quietLogger(): MorayLogger {
    return bunyan.createLogger({ name: 'moray', level: bunyan.FATAL + 1 });
}

/** A client that connects in the background (requests fail fast until it has). */
export function createMorayClient(opts: MorayConnectOptions): MorayClient {
    const log = opts.log ?? quietLogger();
    const o: Record<string, unknown> = { log };
    if (opts.srvDomain !== undefined) {
        o.srvDomain = opts.srvDomain;
    } else {
        if (opts.host === undefined) {
            throw new TypeError('moray: host or srvDomain is required');
        }
        o.host = opts.host;
        if (opts.port !== undefined) {
            o.port = opts.port;
        }
    }
    if (opts.cueballOptions) {
        o.cueballOptions = opts.cueballOptions;
    } else {
        o.connectTimeout = opts.connectTimeoutMs ?? 1000;
        // 2.1.2's policy: 100 ms doubling to 6 s. Once the attempts are used
        // up cueball keeps retrying a dead backend every maxTimeout, forever.
        o.retry = { retries: 10, minTimeout: 100, maxTimeout: 6000, ...opts.retry };
    }
    return new MorayClient(moray.createClient(o), { requestTimeoutMs: opts.requestTimeoutMs });
}

/** A client with a connection, or StoreUnavailableError after connectTimeoutMs (default 10 s). */
export async function connectMoray(opts: MorayConnectOptions): Promise<MorayClient> {
    const client = createMorayClient(opts);
    try {
        await client.waitConnected(opts.connectTimeoutMs ?? 10_000);
    } catch (err) {
        await client.close();
        throw err;
    }
    return client;
}
