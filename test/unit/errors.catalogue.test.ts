// The error catalogue: one status per entry, the documented codes are
// exactly the catalogue's, and every store error becomes a coded answer.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { CODES, inContext, passedOn, SapiError, toApiError, wireCode, type RestCode } from '../../lib/errors.js';
import { EtagConflictError, NotFoundError, StoreError, StoreUnavailableError, UniqueError } from '../../lib/stor/errors.js';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'index.md');

const ENTRIES = Object.keys(CODES) as RestCode[];

/** `status code` pairs the catalogue can send. */
const SENDABLE = new Set(ENTRIES.map((e) => `${CODES[e]} ${wireCode(e)}`));

/** Every `| <status> | `<Code>`… |` row of the docs: [status, code, line]. */
function documented(text: string): [number, string, string][] {
    const out: [number, string, string][] = [];
    for (const line of text.split('\n')) {
        const m = /^\| (\d{3}) \| (`[A-Za-z]+`(?:(?:, | \/ )`[A-Za-z]+`)*)/.exec(line);
        if (!m) {
            continue;
        }
        for (const code of (m[2] ?? '').matchAll(/`([A-Za-z]+)`/g)) {
            out.push([Number(m[1]), code[1] ?? '', line]);
        }
    }
    return out;
}

t.test('every documented status and code is a catalogue entry', async (t) => {
    const rows = documented(readFileSync(DOC, 'utf8'));
    t.ok(rows.length > 50, `the docs have error tables (${rows.length} rows)`);
    for (const [status, code, line] of rows) {
        t.ok(SENDABLE.has(`${status} ${code}`), `${status} ${code} is in the catalogue`, { line });
    }
});

t.test('every catalogue entry is in the general error table of the docs', async (t) => {
    const text = readFileSync(DOC, 'utf8');
    const start = text.indexOf('Error codes used by the API:');
    t.ok(start > 0, 'the docs have the general table');
    const table = text.slice(start, text.indexOf('\n\n', text.indexOf('| Status |', start)));
    const listed = new Set(documented(table).map(([s, c]) => `${s} ${c}`));
    for (const e of ENTRIES) {
        t.ok(listed.has(`${CODES[e]} ${wireCode(e)}`), `${e}: ${CODES[e]} ${wireCode(e)} is documented`);
    }
});

t.test('an error gets its status from the catalogue; a second status of one wire code is its own entry', async (t) => {
    t.match(new SapiError('PreconditionFailed', 'm'), { statusCode: 412, restCode: 'PreconditionFailed', entry: 'PreconditionFailed' });
    t.match(new SapiError('ServerPreconditionFailed', 'm'), { statusCode: 409, restCode: 'PreconditionFailed' });
    t.match(new SapiError('DownstreamTimeout', 'm'), { statusCode: 504, restCode: 'DownstreamError' });
    t.strictSame(new SapiError('MissingParameter', 'missing x').toJSON(), { code: 'MissingParameter', message: 'missing x' });
    const passed = new SapiError(passedOn(404, undefined), 'gone');
    t.match(passed, { statusCode: 404, restCode: 'InvalidArgument', entry: 'PassedOn' }, 'an uncoded downstream 4xx');
    t.match(inContext(passed, 'reading server x'), { statusCode: 404, restCode: 'InvalidArgument', message: 'reading server x: gone' });
    t.match(inContext(new SapiError('DownstreamUnavailable', 'down'), 'doing'), { statusCode: 503, entry: 'DownstreamUnavailable' });
});

t.test('store errors: one translation, with the object named when known', async (t) => {
    const about = { kind: 'service', uuid: 'u1' };
    const cases: [unknown, number, string, RegExp, RegExp][] = [
        [new StoreUnavailableError('moray down'), 503, 'StoreUnavailable', /^moray down$/, /^moray down$/],
        [new NotFoundError('sapi_services', 'u1'), 404, 'ResourceNotFound', /no object u1/, /^no such service: u1$/],
        [new EtagConflictError('sapi_services', 'u1', 'a', 'b'), 412, 'PreconditionFailed', /etag conflict/, /^service u1 was changed/],
        [new UniqueError('sapi_services', 'u1'), 409, 'InvalidArgument', /already exists/, /^service already exists: u1$/],
        [new StoreError('odd'), 500, 'InternalError', /^store error: odd$/, /^store error: odd$/],
        [new TypeError('bug'), 500, 'InternalError', /^internal error: bug$/, /^store error: bug$/],
    ];
    for (const [err, status, code, bare, named] of cases) {
        const name = (err as Error).name;
        t.match(toApiError(err), { statusCode: status, restCode: code, message: bare }, `${name}, escaped untranslated`);
        t.match(toApiError(err, about), { statusCode: status, restCode: code, message: named }, `${name}, about an object`);
        t.match(toApiError(err, 'store'), { statusCode: status, restCode: code }, `${name}, from a store-wide operation`);
    }
    const sapi = new SapiError('InvalidArgument', 'as is');
    t.equal(toApiError(sapi), sapi, 'a SAPI error is returned as it is');
});
