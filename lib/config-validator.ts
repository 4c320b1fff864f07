// The config validator: ajv code for schemas/config.ts. The build writes it
// ahead of time (tools/bundle-server.ts, as config-validator.generated.js),
// so a start need not compile the schema; without a build (tests, tsx) it is
// compiled here on first use, from the same options, to the same code.

import { Ajv, type Options, type ValidateFunction } from 'ajv';

import { configSchema } from '../schemas/config.js';
import { configFormats } from './config-formats.js';

export { configFormats };

/**
 * The validator runs once per start: skipping ajv's code optimisation and
 * the check of the schema itself (the unit tests cover it) makes it cheaper.
 * Defaults are filled in, and config-agent's strings coerced.
 */
export const CONFIG_AJV_OPTIONS: Options = {
    useDefaults: true,
    coerceTypes: true,
    allErrors: true,
    verbose: true,
    strict: false,
    validateSchema: false,
    code: { optimize: false },
};

/** A new ajv with the config's options and formats (`code`: extra code options, for the build). */
export function configAjv(code: Options['code'] = {}): Ajv {
    const ajv = new Ajv({ ...CONFIG_AJV_OPTIONS, inlineRefs: false, code: { ...CONFIG_AJV_OPTIONS.code, ...code } });
    for (const [name, format] of Object.entries(configFormats)) {
        ajv.addFormat(name, format);
    }
    return ajv;
}

type Schema = { [key: string]: unknown };

/**
 * The config schema as the validator is compiled from: each nested object
 * with properties becomes a definition of its own (identical ones, such as
 * the moray client's five recovery objects, once), used through `$ref`;
 * with `inlineRefs: false`, ajv writes one function per definition. The
 * whole schema as one function was ~200 KB of code that V8 compiled at
 * every start; now it compiles the top level and only the functions of the
 * objects a config has. The checks, defaults, coercions and errors are the
 * same: a property's `default` stays beside its `$ref`, where ajv's
 * defaults are read from, and an error's parentSchema is the object's own
 * schema, as before.
 */
export function configSchemaForCode(): Schema {
    const definitions: Record<string, Schema> = {};
    const names = new Map<string, string>();
    const hoist = (schema: Schema, path: string): Schema => {
        const props = schema.properties as Record<string, Schema> | undefined;
        if (!props) {
            return schema;
        }
        const out: Schema = { ...schema, properties: {} };
        for (const [key, sub] of Object.entries(props)) {
            (out.properties as Record<string, Schema>)[key] = isObjectSchema(sub) ? refTo(sub, path === '' ? key : `${path}.${key}`) : sub;
        }
        return out;
    };
    const refTo = (sub: Schema, path: string): Schema => {
        const { default: dflt, ...rest } = sub;
        const body = hoist(rest, path);
        const text = JSON.stringify(body);
        let name = names.get(text);
        if (name === undefined) {
            name = path;
            names.set(text, name);
            definitions[name] = body;
        }
        return { $ref: `#/definitions/${name}`, ...(dflt === undefined ? {} : { default: dflt }) };
    };
    const top = hoist(configSchema, '');
    return { ...top, definitions };
}

function isObjectSchema(s: Schema): boolean {
    return s.type === 'object' && typeof s.properties === 'object' && s.properties !== null;
}

/** Compile the config schema now (no build). */
export function compileConfigValidator(): ValidateFunction {
    return configAjv().compile(configSchemaForCode());
}
