// Every API error in one place: a closed catalogue of REST codes, each with
// the one HTTP status it is sent with. The body is restify's {code, message}
// (plus `errors` for validation details); status codes follow SAPI 2.1.2
// (restify 4 semantics: validation errors are 409).
//
// A catalogue entry is what an error is; the wire code is what the body
// says. They are the same word except where the API documents one wire code
// at two statuses (a failed If-Match is 412 PreconditionFailed, a server
// refusing an agent uninstall is 409 PreconditionFailed; DownstreamError is
// 502, 503 or 504 by cause): each status then has its own entry, sent under
// the shared wire code. The one answer not built from the catalogue is a
// downstream service's own 4xx, passed on with its status and code.

import { EtagConflictError, NotFoundError, StoreError, StoreUnavailableError, UniqueError } from './stor/errors.js';

export const CODES = {
    // ---- 4xx
    InvalidVersion: 400,
    /** Sent by restify's body parser (malformed JSON). */
    InvalidContent: 400,
    ResourceNotFound: 404,
    /** Sent by restify for a known path and a wrong method. */
    MethodNotAllowedError: 405,
    MissingParameter: 409,
    InvalidArgument: 409,
    SchemaValidationError: 409,
    OperationInProgress: 409,
    ServerNotSetup: 409,
    ServerNotRunning: 409,
    InstanceExists: 409,
    UnsupportedOperationError: 409,
    /** A server cannot do what was asked (CNAPI refused an agent uninstall); wire code PreconditionFailed. */
    ServerPreconditionFailed: 409,
    /** If-Match does not match the current tag, or another writer got in first. */
    PreconditionFailed: 412,
    /** Sent by restify's body parser (body larger than maxBodyBytes). */
    PayloadTooLarge: 413,
    // ---- 5xx
    InternalError: 500,
    AgentTaskFailedError: 500,
    ProvisionFailedError: 500,
    ReprovisionFailedError: 500,
    DestroyFailedError: 500,
    TeardownHookError: 500,
    NoDeployer: 501,
    /** A downstream service answered 5xx or an unusable answer. */
    DownstreamError: 502,
    /** A downstream service could not be reached; wire code DownstreamError. */
    DownstreamUnavailable: 503,
    StoreUnavailable: 503,
    /** A single downstream request timed out; wire code DownstreamError. */
    DownstreamTimeout: 504,
    TaskTimeoutError: 504,
} as const;

export type RestCode = keyof typeof CODES;

/** Entries sent under another entry's word (the same wire code at a second status). */
const WIRE_CODE: { readonly [K in RestCode]?: RestCode } = {
    ServerPreconditionFailed: 'PreconditionFailed',
    DownstreamUnavailable: 'DownstreamError',
    DownstreamTimeout: 'DownstreamError',
};

/** The `code` an entry is sent with. */
export function wireCode(code: RestCode): RestCode {
    return WIRE_CODE[code] ?? code;
}

/**
 * A downstream service's own 4xx answer, passed on as it came: its status,
 * and its code (InvalidArgument when it sent none). Only the downstream
 * HTTP client builds these, from what the service answered.
 */
export interface PassedOn {
    readonly passedOn: { readonly status: number; readonly code: string | undefined };
}

export function passedOn(status: number, code: string | undefined): PassedOn {
    return { passedOn: { status, code } };
}

export interface FieldError {
    field: string;
    code: string;
    message: string;
}

export interface SapiErrorOptions {
    cause?: unknown;
    errors?: FieldError[];
}

export class SapiError extends Error {
    /** The catalogue entry, or 'PassedOn' for a downstream 4xx passed on. */
    readonly entry: RestCode | 'PassedOn';
    readonly statusCode: number;
    /** The body's `code`. */
    readonly restCode: string;
    errors?: FieldError[];

    constructor(code: RestCode | PassedOn, message: string, opts: SapiErrorOptions = {}) {
        super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
        if (typeof code === 'string') {
            this.entry = code;
            this.statusCode = CODES[code];
            this.restCode = wireCode(code);
        } else {
            this.entry = 'PassedOn';
            this.statusCode = code.passedOn.status;
            this.restCode = code.passedOn.code ?? wireCode('InvalidArgument');
        }
        this.name = this.restCode.endsWith('Error') ? this.restCode : `${this.restCode}Error`;
        if (opts.errors) {
            this.errors = opts.errors;
        }
    }

    /** What this error was built from, to build another like it. */
    get source(): RestCode | PassedOn {
        return this.entry === 'PassedOn' ? passedOn(this.statusCode, this.restCode) : this.entry;
    }

    /** restify's JSON formatter calls this. */
    toJSON(): { code: string; message: string; errors?: FieldError[] } {
        const body: { code: string; message: string; errors?: FieldError[] } = {
            code: this.restCode,
            message: this.message,
        };
        if (this.errors) {
            body.errors = this.errors;
        }
        return body;
    }
}

/** True for a SAPI error built from this catalogue entry. */
export function hasCode(err: unknown, code: RestCode): err is SapiError {
    return err instanceof SapiError && err.entry === code;
}

// ---- 4xx

export const missingParameter = (message: string): SapiError => new SapiError('MissingParameter', message);

export const missingKeys = (keys: string[]): SapiError => missingParameter(`missing required keys: ${keys.join(', ')}`);

export const invalidArgument = (message: string, errors?: FieldError[]): SapiError => new SapiError('InvalidArgument', message, errors ? { errors } : {});

export const schemaValidation = (message: string): SapiError => new SapiError('SchemaValidationError', message);

export const notFound = (message: string): SapiError => new SapiError('ResourceNotFound', message);

export const noSuch = (kind: string, uuid: string): SapiError => notFound(`no such ${kind}: ${uuid}`);

export const invalidVersion = (message: string): SapiError => new SapiError('InvalidVersion', message);

export const invalidContent = (message: string): SapiError => new SapiError('InvalidContent', message);

export const methodNotAllowed = (method: string): SapiError => new SapiError('MethodNotAllowedError', `${method} is not allowed`);

/** 412: If-Match does not match, or the object changed under a conditional write. */
export const preconditionFailed = (message: string): SapiError => new SapiError('PreconditionFailed', message);

/** 409 PreconditionFailed: a server cannot do what was asked. */
export const serverPreconditionFailed = (message: string): SapiError => new SapiError('ServerPreconditionFailed', message);

export const operationInProgress = (message: string): SapiError => new SapiError('OperationInProgress', message);

export const serverNotSetup = (message: string): SapiError => new SapiError('ServerNotSetup', message);

export const serverNotRunning = (message: string): SapiError => new SapiError('ServerNotRunning', message);

export const instanceExists = (message: string): SapiError => new SapiError('InstanceExists', message);

export const unsupportedOperation = (message: string): SapiError => new SapiError('UnsupportedOperationError', message);

// ---- 5xx

export const internal = (message: string, cause?: unknown): SapiError => new SapiError('InternalError', message, { cause });

export const storeUnavailable = (message: string, cause?: unknown): SapiError => new SapiError('StoreUnavailable', message, { cause });

export const noDeployer = (type: string): SapiError =>
    new SapiError(
        'NoDeployer',
        `no deployer for instance type "${type}" in full mode: set ${type === 'agent' ? 'cnapi.url and imgapi.url' : 'vmapi.url'} in the config`,
    );

const DOWNSTREAM_BY_STATUS = { 502: 'DownstreamError', 503: 'DownstreamUnavailable', 504: 'DownstreamTimeout' } as const;

/** A downstream Triton service answered 5xx or timed out (502/503/504 by cause). */
export const downstream = (statusCode: 502 | 503 | 504, message: string, cause?: unknown): SapiError =>
    new SapiError(DOWNSTREAM_BY_STATUS[statusCode], message, { cause });

/** The downstream entries: no usable answer (worth retrying when polling). */
export function isDownstreamFailure(err: unknown): err is SapiError {
    return hasCode(err, 'DownstreamError') || hasCode(err, 'DownstreamUnavailable') || hasCode(err, 'DownstreamTimeout');
}

/** 2.1.2's deploy failure codes (500). */
export const provisionFailed = (message: string): SapiError => new SapiError('ProvisionFailedError', message);
export const reprovisionFailed = (message: string): SapiError => new SapiError('ReprovisionFailedError', message);
export const destroyFailed = (message: string): SapiError => new SapiError('DestroyFailedError', message);
export const teardownHookFailed = (message: string): SapiError => new SapiError('TeardownHookError', message);
export const agentTaskFailed = (message: string): SapiError => new SapiError('AgentTaskFailedError', message);
export const taskTimeout = (message: string): SapiError => new SapiError('TaskTimeoutError', message);

export function isSapiError(err: unknown): err is SapiError {
    return err instanceof SapiError;
}

// ---- anything thrown → an API error

/**
 * What a failed store call was about: one object (for "no such <kind>:
 * <uuid>" messages), or 'store' for a store-wide operation (a migration, a
 * cache refresh), whose failures keep the store's own messages.
 */
export type StoreSubject = { kind: string; uuid: string } | 'store';

function messageOf(err: unknown): string {
    return (err as Error | undefined)?.message ?? String(err);
}

/**
 * The API error for anything a handler throws: a SAPI error as it is; a
 * store error by its kind (unavailable → 503 StoreUnavailable, not found →
 * 404, etag conflict → 412 PreconditionFailed, duplicate uuid → 409
 * InvalidArgument, anything else → 500); any other failure → 500
 * InternalError naming it. `about` says the failure came from a store call
 * (and names the object when the caller knows it, for the messages clients
 * see on object routes).
 */
export function toApiError(err: unknown, about?: StoreSubject): SapiError {
    if (err instanceof SapiError) {
        return err;
    }
    if (err instanceof StoreUnavailableError) {
        return storeUnavailable(err.message, err);
    }
    const one = typeof about === 'object' ? about : undefined;
    if (err instanceof NotFoundError) {
        return one ? noSuch(one.kind, one.uuid) : new SapiError('ResourceNotFound', err.message, { cause: err });
    }
    if (err instanceof EtagConflictError) {
        const message = one ? `${one.kind} ${one.uuid} was changed by another request (etag mismatch)` : err.message;
        return new SapiError('PreconditionFailed', message, { cause: err });
    }
    if (err instanceof UniqueError) {
        // The unique index of every bucket is the uuid: the uuid is taken.
        const message = one ? `${one.kind} already exists: ${one.uuid}` : err.message;
        return new SapiError('InvalidArgument', message, { cause: err });
    }
    if (err instanceof StoreError || about) {
        return internal(`store error: ${messageOf(err)}`, err);
    }
    return internal(`internal error: ${messageOf(err)}`, err);
}

/**
 * Prefixes a SAPI error with what was being done, keeping its status, code
 * and field errors (e.g. `provisioning VM <uuid>: VMAPI unavailable: …`).
 * Anything else, or an error already prefixed so, is returned as is.
 */
export function inContext(err: unknown, what: string): unknown {
    if (!(err instanceof SapiError) || err.message.startsWith(`${what}: `)) {
        return err;
    }
    const out = new SapiError(err.source, `${what}: ${err.message}`, { cause: err });
    if (err.errors) {
        out.errors = err.errors;
    }
    return out;
}

/** Runs `fn`; a failure is rethrown with `what` in front of its message. */
export async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
        return await fn();
    } catch (err) {
        throw inContext(err, what);
    }
}
