// Assertions shared by the API tests: coded error answers.

import type { Test } from 'tap';

import type { CallResult } from './harness.js';

/**
 * `r` is an error answer: this status, a JSON body with this `code` and
 * (when given) exactly this `message`. Validation errors may add an
 * `errors` array of field details; nothing else is checked.
 */
export function isError(t: Test, r: CallResult, status: number, code: string, message?: string | RegExp): void {
    t.equal(r.status, status, `status ${status}`);
    t.match(r.headers.get('content-type'), /^application\/json/, 'error bodies are JSON');
    t.equal(r.body?.code, code, `code ${code}`);
    if (typeof message === 'string') {
        t.equal(r.body?.message, message, 'message');
    } else if (message) {
        t.match(r.body?.message, message, 'message');
    }
}
