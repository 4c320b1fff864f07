// A model context on an in-memory SQLite store, for unit tests of
// lib/model/* without HTTP: no deployers, no rollouts, no metrics.

import { randomUUID } from 'node:crypto';

import bunyan from 'bunyan';
import type { Test } from 'tap';

import { parseConfig } from '../../lib/config.js';
import { SapiError } from '../../lib/errors.js';
import { createApplication } from '../../lib/model/applications.js';
import type { Ctx, ReqInfo } from '../../lib/model/context.js';
import { createManifest } from '../../lib/model/manifests.js';
import { createService } from '../../lib/model/services.js';
import type { Application, Dict, Manifest, Mode, Service } from '../../lib/model/types.js';
import { SqliteStore } from '../../lib/stor/sqlite/index.js';

/** The part of a tap Test this module needs. */
export interface HasTeardown {
    teardown(fn: () => unknown): void;
}

export interface ModelCtxOptions {
    mode?: Mode;
    /** Raw config (validated with parseConfig, defaults filled in). */
    config?: Record<string, unknown>;
}

const log = bunyan.createLogger({ name: 'sapi-model-test', level: (process.env.LOG_LEVEL as bunyan.LogLevel) || 'fatal' });

/** A fresh context on its own ':memory:' database, closed at teardown. */
export async function modelCtx(t: HasTeardown, opts: ModelCtxOptions = {}): Promise<Ctx & { store: SqliteStore }> {
    const store = new SqliteStore({ path: ':memory:' });
    await store.init();
    t.teardown(() => store.close());
    return {
        store,
        log,
        config: parseConfig(opts.config ?? {}),
        deployers: {},
        mode: { current: opts.mode ?? 'proto', transitioning: false },
    };
}

/** Per-request facts: the v1 view unless `v2` is given. */
export function reqInfo(v2 = false): ReqInfo {
    return { v2, reqId: randomUUID(), log };
}

export async function anApplication(ctx: Ctx, extra: Dict = {}): Promise<Application> {
    return createApplication(ctx, { name: `app-${randomUUID().slice(0, 8)}`, owner_uuid: randomUUID(), ...extra });
}

export async function aService(ctx: Ctx, applicationUuid: string, extra: Dict = {}): Promise<Service> {
    return createService(ctx, { name: `svc-${randomUUID().slice(0, 8)}`, application_uuid: applicationUuid, ...extra });
}

export async function anAgentService(ctx: Ctx, applicationUuid: string, extra: Dict = {}): Promise<Service> {
    return aService(ctx, applicationUuid, { type: 'agent', ...extra });
}

export async function aManifest(ctx: Ctx, extra: Dict = {}): Promise<Manifest> {
    const name = `m-${randomUUID().slice(0, 8)}`;
    return createManifest(ctx, { name, path: `/opt/${name}.json`, template: `{{${name}}}`, ...extra });
}

/** Resolves to the rejection reason; fails when the promise fulfils. */
export function rejection(p: Promise<unknown>): Promise<unknown> {
    return p.then(
        () => {
            throw new Error('expected a rejection');
        },
        (e: unknown) => e,
    );
}

/** `err` is a SapiError with this status, code and (when given) message. */
export function isSapiError(t: Test, err: unknown, status: number, code: string, message?: string | RegExp): void {
    if (!(err instanceof SapiError)) {
        t.fail(`expected a SapiError, got ${String(err)}`);
        return;
    }
    t.equal(err.statusCode, status, `status ${status}`);
    t.equal(err.restCode, code, `code ${code}`);
    if (typeof message === 'string') {
        t.equal(err.message, message, 'message');
    } else if (message) {
        t.match(err.message, message, 'message');
    }
}
