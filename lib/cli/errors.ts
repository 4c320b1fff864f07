// sapiadm's exit codes, its two error kinds, and how an API error is shown
// to the operator.

import { isDownstreamHttpError } from '../clients/http.js';
import { SapiError } from '../errors.js';

// ---- exit codes

export const EXIT_OK = 0;
/** An API or downstream error. */
export const EXIT_ERROR = 1;
/** Bad arguments or options. */
export const EXIT_USAGE = 2;
/**
 * A destructive command was not confirmed: --yes missing while stdin is not
 * a terminal, or the question not answered y. The usage status: nothing
 * was done, and the same command with --yes (or a y) goes on.
 */
export const EXIT_REFUSED = EXIT_USAGE;
/**
 * Drift or unfinished work: `check` found drift that is still there,
 * `migrate` could not backfill everything, a rollout upgraded nothing while
 * agents remain off their target (newer than it, or on servers not ready).
 */
export const EXIT_DRIFT = 3;

/** Bad command-line input: exit 2. */
export class UsageError extends Error {}

/** A failure with a message already fit for the operator. */
export class CliError extends Error {
    constructor(
        message: string,
        readonly exitCode: number = EXIT_ERROR,
    ) {
        super(message);
    }
}

// ---- errors for the operator

/**
 * `code: message` as the server sent it, with the service and status, e.g.
 * `ResourceNotFound: no such instance: 1234 (SAPI 404)`.
 */
export function describeError(err: unknown): string {
    if (isDownstreamHttpError(err)) {
        const d = err.downstream;
        const body = d.body;
        let message = err.message;
        if (typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string') {
            message = (body as { message: string }).message;
        } else if (typeof body === 'string' && body.length > 0) {
            message = body;
        }
        return `${d.code ?? `HTTP ${d.status}`}: ${message} (${d.service} ${d.status})`;
    }
    if (err instanceof SapiError) {
        // Transport failures: "SAPI unavailable: connect ECONNREFUSED ...".
        return err.message;
    }
    return err instanceof Error ? err.message : String(err);
}
