// Request validation: one ajv instance compiles each schema in schemas/
// once, the first time it is needed (or when the server, once listening,
// warms them all up: precompileRequestSchemas); errors are translated into
// SAPI 2.1.2's codes and messages. The ajv instance is set up then too (ajv
// itself is loaded at start anyway, for the config), so that neither its
// setup nor the compiles delay the start.

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';

import { UUID_RE } from '../../schemas/common.js';
import { REQUEST_SCHEMAS, type RequestId, type RequestOf } from '../../schemas/requests.js';
import { invalidArgument, missingKeys, type FieldError } from '../errors.js';

type SchemaWithRequired = {
    $id: string;
    required?: readonly string[];
    /** A property may name its own message (`x-message`) for any error inside it. */
    properties?: Record<string, { 'x-message'?: string }>;
};

const uuidRe = new RegExp(UUID_RE);

let ajv: Ajv | null = null;

function theAjv(): Ajv {
    if (!ajv) {
        // ajv-formats is CommonJS; the plugin function is its exports or their `default`.
        const formatsPlugin = ajvFormats as unknown as { default?: unknown };
        const addFormats = (formatsPlugin.default ?? formatsPlugin) as (a: Ajv) => void;
        ajv = new Ajv({ allErrors: true, strict: false });
        addFormats(ajv);
        ajv.addFormat('uuid', { type: 'string', validate: (s: string) => uuidRe.test(s) });
    }
    return ajv;
}

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
        v = { fn: theAjv().compile(schema), schema };
        validators.set(schemaId, v);
    }
    return v;
}

/**
 * Compile every request schema now. The server calls it once it listens, a
 * schema at a time between requests; validateRequest compiles on demand
 * whatever is not compiled yet. Resolves when all are compiled.
 */
export async function precompileRequestSchemas(): Promise<void> {
    for (const id of schemas.keys()) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        validatorOf(id);
    }
}

export function isUuid(s: unknown): s is string {
    return typeof s === 'string' && uuidRe.test(s);
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
