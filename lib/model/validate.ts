// Request validation: each schema in schemas/requests.ts checks a route's
// input; errors are translated into SAPI 2.1.2's codes and messages.
//
// The build writes the validators as code (request-validators.generated.js,
// by tools/bundle-server.ts, with lib/model/validate-ajv.ts's ajv), so the
// server neither loads ajv nor compiles a schema, at start or at a first
// request. Running from source (tests, tsx), ajv is loaded here and each
// schema compiled the first time it is needed (or when the server, once
// listening, warms them all up: precompileRequestSchemas).

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import type { Ajv, ErrorObject, ValidateFunction } from 'ajv';

import { REQUEST_SCHEMAS, type RequestId, type RequestOf } from '../../schemas/requests.js';
import { invalidArgument, missingKeys, type FieldError } from '../errors.js';
import { isUuid } from './validate-formats.js';

export { isUuid };

type SchemaWithRequired = {
    $id: string;
    required?: readonly string[];
    /** A property may name its own message (`x-message`) for any error inside it. */
    properties?: Record<string, { 'x-message'?: string }>;
};

/** The build's validators, by schema id; else null, with an ajv to compile them (running from source). */
async function loadValidators(): Promise<{ built: Record<string, ValidateFunction> | null; ajv: Ajv | null }> {
    try {
        return { built: (await import('./request-validators.generated.js')).validators, ajv: null };
    } catch (err) {
        // Loaders word "not found" differently: what counts is whether the file is there.
        if (existsSync(fileURLToPath(new URL('./request-validators.generated.js', import.meta.url)))) {
            throw err;
        }
        return { built: null, ajv: (await import('./validate-ajv.js')).requestAjv() };
    }
}
const { built, ajv } = await loadValidators();

const schemas = new Map<string, SchemaWithRequired>();
for (const schema of Object.values(REQUEST_SCHEMAS) as readonly SchemaWithRequired[]) {
    schemas.set(schema.$id, schema);
}
const validators = new Map<string, { fn: ValidateFunction; schema: SchemaWithRequired }>();

function validatorOf(schemaId: string): { fn: ValidateFunction; schema: SchemaWithRequired } | undefined {
    let v = validators.get(schemaId);
    if (!v) {
        const schema = schemas.get(schemaId);
        if (!schema) {
            return undefined;
        }
        const fn = built ? built[schemaId] : ajv?.compile(schema);
        if (!fn) {
            return undefined;
        }
        v = { fn, schema };
        validators.set(schemaId, v);
    }
    return v;
}

/**
 * Compile every request schema now (running from source; the build's
 * validators need nothing). The server calls it once it listens, a schema
 * at a time between requests; validateRequest compiles on demand whatever
 * is not compiled yet. Resolves when all are compiled.
 */
export async function precompileRequestSchemas(): Promise<void> {
    if (built) {
        return;
    }
    for (const id of schemas.keys()) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        validatorOf(id);
    }
}

/**
 * Throws a 409 MissingParameter / InvalidArgument for a bad request; once it
 * returns, `params` has the type its schema declares.
 */
export function validateRequest<K extends RequestId>(schemaId: K, params: Record<string, unknown>): asserts params is Record<string, unknown> & RequestOf<K> {
    const v = validatorOf(schemaId);
    if (!v) {
        throw new Error(`no request schema ${schemaId}`);
    }
    if (v.fn(params)) {
        return;
    }
    const errors = v.fn.errors ?? [];
    const missing = new Set(errors.filter((e) => e.keyword === 'required').map((e) => (e.params as { missingProperty: string }).missingProperty));
    if (missing.size > 0) {
        throw missingKeys((v.schema.required ?? []).filter((k) => missing.has(k)));
    }
    const details = errors.filter((e) => e.keyword !== 'required' && e.keyword !== 'if').map((e) => fieldError(e, v.schema));
    const first = details[0];
    throw invalidArgument(first ? first.message : 'invalid request', details);
}

function fieldError(e: ErrorObject, schema: SchemaWithRequired): FieldError {
    const field = e.instancePath.replace(/^\//, '').split('/').join('.') || '(body)';
    const top = e.instancePath.split('/')[1];
    const own = top === undefined ? undefined : schema.properties?.[top]?.['x-message'];
    if (top !== undefined && own !== undefined) {
        return { field: top, code: 'Invalid', message: `${top} ${own}` };
    }
    let message: string;
    switch (e.keyword) {
        case 'format':
            message = `${field} must be a UUID`;
            break;
        case 'type':
            message = `${field} must be ${String((e.params as { type: unknown }).type).replace(',', ' or ')}`;
            break;
        case 'enum':
            message = `${field} must be one of: ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).map((x) => JSON.stringify(x)).join(', ')}`;
            break;
        case 'pattern':
            message = `${field} is invalid`;
            break;
        default:
            message = `${field} ${e.message ?? 'is invalid'}`;
    }
    return { field, code: 'Invalid', message };
}

/** A request flag: true/"true"/"1" → true; false/"false"/"0"/""/absent → false. */
export function flagValue(v: unknown): boolean {
    return v === true || v === 'true' || v === '1';
}
