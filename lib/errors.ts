// Every API error in one place. The body is restify's {code, message}
// (plus `errors` for validation details); status codes follow SAPI 2.1.2
// (restify 4 semantics: validation errors are 409).

export interface FieldError {
    field: string;
    code: string;
    message: string;
}

export class SapiError extends Error {
    readonly statusCode: number;
    readonly restCode: string;
    errors?: FieldError[];

    constructor(statusCode: number, restCode: string, message: string, opts: { cause?: unknown; errors?: FieldError[] } = {}) {
        super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
        this.statusCode = statusCode;
        this.restCode = restCode;
        this.name = restCode.endsWith("Error") ? restCode : `${restCode}Error`;
        if (opts.errors) {
            this.errors = opts.errors;
        }
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

// ---- 4xx

export const missingParameter = (message: string): SapiError => new SapiError(409, 'MissingParameter', message);

export const missingKeys = (keys: string[]): SapiError => missingParameter(`missing required keys: ${keys.join(', ')}`);

export const invalidArgument = (message: string, errors?: FieldError[]): SapiError =>
    new SapiError(409, 'InvalidArgument', message, errors ? { errors } : {});

export const schemaValidation = (message: string): SapiError => new SapiError(409, 'SchemaValidationError', message);

export const notFound = (message: string): SapiError => new SapiError(404, 'ResourceNotFound', message);

export const noSuch = (kind: string, uuid: string): SapiError => notFound(`no such ${kind}: ${uuid}`);

export const invalidVersion = (message: string): SapiError => new SapiError(400, 'InvalidVersion', message);

export const invalidContent = (message: string): SapiError => new SapiError(400, 'InvalidContent', message);

export const preconditionFailed = (message: string): SapiError => new SapiError(412, 'PreconditionFailed', message);

export const conflict = (code: string, message: string): SapiError => new SapiError(409, code, message);

export const operationInProgress = (message: string): SapiError => new SapiError(409, 'OperationInProgress', message);

// ---- 5xx

export const internal = (message: string, cause?: unknown): SapiError =>
    new SapiError(500, 'InternalError', message, { cause });

export const serviceUnavailable = (message: string): SapiError => new SapiError(503, 'ServiceUnavailable', message);

export const storeUnavailable = (message: string, cause?: unknown): SapiError =>
    new SapiError(503, 'StoreUnavailable', message, { cause });

export const noDeployer = (type: string): SapiError =>
    new SapiError(501, 'NoDeployer', `no deployer for instance type "${type}" in full mode`);

/** A downstream Triton service answered 5xx or timed out (502/504 by cause). */
export const downstream = (statusCode: 502 | 503 | 504, message: string, cause?: unknown): SapiError =>
    new SapiError(statusCode, 'DownstreamError', message, { cause });

/** 2.1.2's deploy failure codes (500). */
export const provisionFailed = (message: string): SapiError => new SapiError(500, 'ProvisionFailedError', message);
export const reprovisionFailed = (message: string): SapiError => new SapiError(500, 'ReprovisionFailedError', message);
export const destroyFailed = (message: string): SapiError => new SapiError(500, 'DestroyFailedError', message);
export const teardownHookFailed = (message: string): SapiError => new SapiError(500, 'TeardownHookError', message);
export const agentTaskFailed = (message: string): SapiError => new SapiError(500, 'AgentTaskFailedError', message);
export const taskTimeout = (message: string): SapiError => new SapiError(504, 'TaskTimeoutError', message);

export function isSapiError(err: unknown): err is SapiError {
    return err instanceof SapiError;
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
    const out = new SapiError(err.statusCode, err.restCode, `${what}: ${err.message}`, { cause: err });
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
