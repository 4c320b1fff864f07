// What the model needs, built once in bin/ (or the test harness) and
// passed down. The model never sees restify's req/res.

import type Logger from 'bunyan';

import type { SapiConfig } from '../config.js';
import type { Deployer } from '../deploy/deployer.js';
import type { Metrics } from '../metrics.js';
import type { RolloutManager } from '../rollout/runner.js';
import type { Store } from '../stor/store.js';
import type { InstanceType, Mode } from './types.js';

export interface Ctx {
    store: Store;
    log: Logger;
    config: SapiConfig;
    deployers: Partial<Record<InstanceType, Deployer>>;
    mode: ModeState;
    /** Prometheus metrics (set by createApp). */
    metrics?: Metrics;
    /** Agent rollouts (set by createApp). */
    rollouts?: RolloutManager;
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
