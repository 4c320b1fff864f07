// The ajv the request schemas are compiled with: by the build, once, into
// request-validators.generated.js (tools/bundle-server.ts); else, running
// from source, by lib/model/validate.ts on first use. Same options, same
// formats, so the same checks and errors either way.

import { Ajv, type Options } from 'ajv';
import ajvFormats from 'ajv-formats';

import { requestFormats } from './validate-formats.js';

/** A new ajv for the request schemas (`code`: code options, for the build). */
export function requestAjv(code: Options['code'] = {}): Ajv {
    // ajv-formats is CommonJS; the plugin function is its exports or their `default`.
    const formatsPlugin = ajvFormats as unknown as { default?: unknown };
    const addFormats = (formatsPlugin.default ?? formatsPlugin) as (a: Ajv) => void;
    const ajv = new Ajv({ allErrors: true, strict: false, code });
    addFormats(ajv);
    for (const [name, format] of Object.entries(requestFormats)) {
        ajv.addFormat(name, format);
    }
    return ajv;
}
