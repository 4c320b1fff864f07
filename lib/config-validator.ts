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
    const ajv = new Ajv({ ...CONFIG_AJV_OPTIONS, code: { ...CONFIG_AJV_OPTIONS.code, ...code } });
    for (const [name, format] of Object.entries(configFormats)) {
        ajv.addFormat(name, format);
    }
    return ajv;
}

/** Compile the config schema now (no build). */
export function compileConfigValidator(): ValidateFunction {
    return configAjv().compile(configSchema);
}
