// A rollout: upgrade agent instances to new images, many servers at a
// time, with per-instance state kept in the store. One agent service to one
// image, or a plan of several agent services (each to its own image) on a
// set of servers, with canaries, a failure threshold and a way back.

export type ItemState = 'pending' | 'running' | 'succeeded' | 'failed' | 'stalled' | 'canceled' | 'skipped';

/**
 * running → (paused ⇄ running) → succeeded | failed | canceled;
 * revert: → reverting → reverted | failed (or canceled).
 */
export type RolloutState = 'running' | 'paused' | 'reverting' | 'succeeded' | 'failed' | 'canceled' | 'reverted';

/** Why a rollout waits: its canary servers are done, or max_failures was reached. */
export type PausedReason = 'canary' | 'failures';

/** canary: on the first `canary` servers; main: the rest; revert: back to from_image. */
export type ItemPhase = 'canary' | 'main' | 'revert';

/** States of a rollout that someone drives (holds its lease and starts items). */
export const ACTIVE_STATES: readonly RolloutState[] = ['running', 'reverting'];

/** States a rollout never leaves. */
export const FINAL_STATES: readonly RolloutState[] = ['succeeded', 'failed', 'canceled', 'reverted'];

/**
 * What an item does: upgrade an agent SAPI records; install one its server
 * lacks; adopt (record) one its server has but SAPI does not record; or,
 * reverting an install, uninstall it. Absent: upgrade.
 */
export type ItemAction = 'upgrade' | 'install' | 'adopt' | 'uninstall';

export interface RolloutItem {
    [key: string]: unknown;
    /** The instance (for an install: the uuid it will be recorded under). */
    instance_uuid: string;
    action?: ItemAction;
    server_uuid: string;
    service_uuid: string;
    service_name: string;
    /** The image the agent had before this item (recorded before it ran). */
    from_image?: string;
    to_image: string;
    /** The versions of from_image (what runs on the server) and to_image, where known. */
    from_version?: string;
    to_version?: string;
    /** Why the plan skipped or failed the item before it ran (already at the target, newer, server not ready). */
    reason?: string;
    phase?: ItemPhase;
    state: ItemState;
    started_at?: string;
    finished_at?: string;
    duration_ms?: number;
    error?: string;
    /** Attempts (a resumed rollout re-runs interrupted items). */
    attempts: number;
}

/** A planned agent service and the image it goes to. */
export interface PlanService {
    [key: string]: unknown;
    service_uuid: string;
    service_name: string;
    image_uuid: string;
}

/** The grouped view of one server's items (answers only; not stored). */
export interface RolloutServer {
    server_uuid: string;
    /** running: an item runs; pending: items wait; then failed, canceled, skipped (all skipped) or succeeded. */
    state: 'pending' | 'running' | 'succeeded' | 'failed' | 'canceled' | 'skipped';
    items: RolloutItem[];
}

export interface RolloutTotals {
    [key: string]: unknown;
    servers: number;
    /** Servers with no item pending or running. */
    servers_done: number;
    items: number;
    succeeded: number;
    failed: number;
    skipped: number;
}

/** Per item state; `skipped` only once an item was skipped (older readers compare the six others). */
export type RolloutCounts = Record<Exclude<ItemState, 'skipped'>, number> & { skipped?: number };

export interface Rollout {
    [key: string]: unknown;
    uuid: string;
    /** Single-service rollouts: the service and its target image. */
    service_uuid?: string;
    /** The service's name; for a plan, the planned services' names joined by commas. */
    service_name: string;
    image_uuid?: string;
    /** Plans: every planned service and its target image. */
    services?: PlanService[];
    /** Plans: the exclusions as given. */
    exclude_services?: string[];
    /** How many servers are worked on at once (their agents one after another). */
    concurrency: number;
    /** Stall warning after this multiple of the running average. */
    stall_factor: number;
    /** Finished items needed before the average is trusted. */
    stall_min_finished: number;
    /** Hard limit per instance. */
    instance_timeout_ms: number;
    /** Servers upgraded first; then the rollout pauses until promoted. */
    canary?: number;
    auto_promote_after_ms?: number;
    /** When a paused canary rollout promotes itself. */
    auto_promote_at?: string;
    promoted_at?: string;
    /** A count, or a percentage ("5%") of the items to upgrade. */
    max_failures?: number | string;
    /** Agents newer than their target are upgraded (downgraded) too, not skipped. */
    allow_downgrade?: boolean;
    /** Agents a targeted server lacks are installed (or adopted when it has them unrecorded). */
    install_missing?: boolean;
    /** Servers an install_missing plan leaves alone, and why (not set up, not running, no cn-agent). */
    skipped_servers?: { server_uuid: string; reason: string }[];
    /** Failed items when last resumed: max_failures counts the failures after it. */
    failures_baseline?: number;
    state: RolloutState;
    paused_reason?: PausedReason;
    paused_at?: string;
    reverted_at?: string;
    created_at: string;
    finished_at?: string;
    /** Set when a restart (or another SAPI) took the rollout over. */
    resumed_at?: string;
    average_ms?: number;
    counts: RolloutCounts;
    totals: RolloutTotals;
    warnings: string[];
    items: RolloutItem[];
    /** Answers only: the items grouped by server. */
    servers?: RolloutServer[];
    /** The SAPI (lease owner id) driving the rollout. */
    owner?: string;
}

/** The named keys of T (its index signature left out), so that Pick/Omit keep their types. */
type NamedKeys<T> = keyof { [K in keyof T as string extends K ? never : K]: T[K] };

/** What GET /rollouts lists: a rollout without its items. */
export type RolloutSummary = Pick<Rollout, Exclude<NamedKeys<Rollout>, 'items' | 'servers'>>;

/** A plan as a dry run answers it: never stored, no uuid, state "planned", items grouped by server. */
export type RolloutPreview = Pick<Rollout, Exclude<NamedKeys<Rollout>, 'uuid' | 'state'>> & { dry_run: true; state: 'planned'; summary: string };

export const DEFAULT_CONCURRENCY = 20;
export const DEFAULT_STALL_FACTOR = 3;
export const DEFAULT_STALL_MIN_FINISHED = 3;
export const DEFAULT_INSTANCE_TIMEOUT_MS = 30 * 60 * 1000;
