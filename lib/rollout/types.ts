// A rollout: upgrade the instances of an agent service to one image, many
// servers at a time, with per-instance state kept in the store.

export type ItemState = 'pending' | 'running' | 'succeeded' | 'failed' | 'stalled' | 'canceled';
export type RolloutState = 'running' | 'succeeded' | 'failed' | 'canceled';

export interface RolloutItem {
    [key: string]: unknown;
    instance_uuid: string;
    server_uuid: string;
    state: ItemState;
    started_at?: string;
    finished_at?: string;
    duration_ms?: number;
    error?: string;
    /** Attempts (a resumed rollout re-runs interrupted items). */
    attempts: number;
}

export interface Rollout {
    [key: string]: unknown;
    uuid: string;
    service_uuid: string;
    service_name: string;
    image_uuid: string;
    concurrency: number;
    /** Stall warning after this multiple of the running average. */
    stall_factor: number;
    /** Finished items needed before the average is trusted. */
    stall_min_finished: number;
    /** Hard limit per instance. */
    instance_timeout_ms: number;
    state: RolloutState;
    created_at: string;
    finished_at?: string;
    /** Set when a restart interrupted the rollout (servers are re-checked per item then). */
    resumed_at?: string;
    average_ms?: number;
    counts: Record<ItemState, number>;
    warnings: string[];
    items: RolloutItem[];
}

export const DEFAULT_CONCURRENCY = 20;
export const DEFAULT_STALL_FACTOR = 3;
export const DEFAULT_STALL_MIN_FINISHED = 3;
export const DEFAULT_INSTANCE_TIMEOUT_MS = 30 * 60 * 1000;
