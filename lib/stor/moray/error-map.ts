// Moray's errors, mapped to lib/stor/errors.ts types.
//
// Moray's own request errors arrive wrapped in a VError chain
// (client → FastRequestError → FastServerError → server error); the server
// error's `name` decides the mapping. Anything that is not a server error
// (no connection, socket closed, timeout) is a StoreUnavailableError.

import { EtagConflictError, NotFoundError, StoreError, StoreUnavailableError, UniqueError } from '../errors.js';

/**
 * A Moray request error that is neither "not found", "etag conflict",
 * "unique" nor a connection problem (e.g. InvalidQueryError,
 * BucketConflictError, BucketVersionError). `morayName` is Moray's name.
 */
export class MorayRequestError extends StoreError {
    override name = 'MorayRequestError';
    constructor(
        readonly morayName: string,
        message: string,
        override readonly cause?: unknown,
    ) {
        super(`moray ${morayName}: ${message}`);
    }
}

/** Request errors that say nothing about Moray's health (2.1.2's list). */
const USAGE_ERRORS = new Set([
    'BucketConflictError',
    'BucketVersionError',
    'InvalidBucketConfigError',
    'InvalidBucketNameError',
    'InvalidIndexDefinitionError',
    'InvalidIndexTypeError',
    'InvalidQueryError',
    'InvalidRequireError',
    'InvalidArgumentError',
    'NotFunctionError',
    'NotIndexedError',
    'NotNullableError',
    'UnhandledOptionsError',
]);

interface ErrorInfo {
    name?: string;
    message?: string;
    context?: Record<string, unknown>;
}

function causeOf(err: unknown): unknown {
    if (!err || typeof err !== 'object') {
        return undefined;
    }
    const e = err as { cause?: unknown; jse_cause?: unknown };
    if (typeof e.cause === 'function') {
        try {
            return (e.cause as () => unknown).call(err) ?? undefined;
        } catch {
            return e.jse_cause;
        }
    }
    return e.cause ?? e.jse_cause;
}

/** The error the Moray server sent, if `err` carries one. */
export function serverErrorOf(err: unknown): ErrorInfo | null {
    let cur: unknown = err;
    for (let depth = 0; cur && depth < 10; depth++) {
        const e = cur as ErrorInfo;
        if (e.name === 'FastServerError') {
            const c = causeOf(cur) as ErrorInfo | undefined;
            return c ?? null;
        }
        cur = causeOf(cur);
    }
    return null;
}

/** Moray's error name (server errors), else the outermost named cause. */
export function morayErrorName(err: unknown): string | null {
    const s = serverErrorOf(err);
    if (s?.name) {
        return s.name;
    }
    let cur: unknown = err;
    for (let depth = 0; cur && depth < 10; depth++) {
        const n = (cur as ErrorInfo).name;
        if (n && n !== 'VError' && n !== 'Error' && n !== 'FastRequestError') {
            return n;
        }
        cur = causeOf(cur);
    }
    return null;
}

export interface ErrorContext {
    bucket?: string | undefined;
    key?: string | undefined;
    expected?: string | null | undefined;
}

function str(v: unknown): string | undefined {
    return typeof v === 'string' ? v : undefined;
}

/** Map any error from the moray client to a lib/stor/errors.ts type. */
export function translateError(err: unknown, ctx: ErrorContext = {}): StoreError {
    if (err instanceof StoreError) {
        return err;
    }
    const server = serverErrorOf(err);
    if (!server?.name) {
        const msg = err instanceof Error ? err.message : String(err);
        return new StoreUnavailableError(`moray unavailable: ${msg}`, err);
    }
    const c = server.context ?? {};
    const bucket = ctx.bucket ?? str(c.bucket) ?? '?';
    const key = ctx.key ?? str(c.key) ?? '?';
    switch (server.name) {
        case 'ObjectNotFoundError':
            return new NotFoundError(bucket, key);
        case 'EtagConflictError': {
            const actual = str(c.actual);
            const expected = ctx.expected !== undefined ? ctx.expected : (str(c.expected) ?? null);
            return new EtagConflictError(bucket, key, expected === 'null' ? null : expected, actual === undefined || actual === 'null' ? null : actual);
        }
        case 'UniqueAttributeError':
            return new UniqueError(bucket, key);
        case 'BucketNotFoundError':
            return new StoreUnavailableError(`moray bucket ${bucket} is not set up: ${server.message ?? ''}`, err);
        default:
            if (USAGE_ERRORS.has(server.name)) {
                return new MorayRequestError(server.name, server.message ?? '', err);
            }
            return new StoreUnavailableError(`moray ${server.name}: ${server.message ?? ''}`, err);
    }
}
