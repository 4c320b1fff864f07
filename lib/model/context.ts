// What the model needs, built once by the composition root (lib/app.ts)
// and never changed afterwards. The model never sees restify's req/res.

import type Logger from 'bunyan';

import type { SapiConfig } from '../config.js';
import type { Deployer } from './deployer.js';
import type { Store } from '../stor/store.js';
import type { Application, InstanceType, Mode, Service } from './types.js';

export interface Ctx {
    readonly store: Store;
    readonly log: Logger;
    readonly config: SapiConfig;
    /** The deployer of each instance type whose Triton services are configured. */
    readonly deployers: Readonly<Partial<Record<InstanceType, Deployer>>>;
    /** The current mode: state that changes (proto → full), not wiring. */
    readonly mode: ModeState;
    /** GetConfig's documents kept between requests (lib/model/config-cache.ts); absent: assembled every time. */
    readonly configs?: ConfigAnswers;
}

/** An instance's GetConfig ETag, and its document as JSON (null when not asked for and not kept). */
export interface ConfigAnswer {
    etag: string;
    body: Buffer | null;
}

export interface ConfigAnswers {
    /** The config of `uuid`; with `withBody`, its JSON too. */
    get(ctx: Ctx, uuid: string, withBody: boolean): Promise<ConfigAnswer>;
    /**
     * Services and applications as GetConfig's documents are made of them:
     * exact for writes through this process, and on Moray within the bound
     * GetConfig answers with for writes through another (read from the
     * store, or kept, or from the local copy the change feed keeps).
     */
    parents?(ctx: Ctx): ParentReader;
}

/** Reads a service or an application: the stored object, or null. */
export interface ParentReader {
    service(uuid: string): Promise<Service | null>;
    application(uuid: string): Promise<Application | null>;
}

/** Per-request facts the model needs. */
export interface ReqInfo {
    /** Accept-Version view: true for v2 (type shown, agent deploys). */
    v2: boolean;
    reqId: string;
    log: Logger;
}

export interface ModeState {
    current: Mode;
    /** True while a proto → full switch runs. */
    transitioning: boolean;
}
