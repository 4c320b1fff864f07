// loadConfig(path): JSON file → ajv (defaults, coercion of config-agent's
// string values) → SapiConfig. Every key is checked before anything starts;
// a failure is a ConfigError whose one-line message names the key (and, for
// a key the schema does not know, the closest one it does).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ErrorObject, ValidateFunction } from 'ajv';
import type { FromSchema } from 'json-schema-to-ts';

import type { configSchema } from '../schemas/config.js';
import { errnoText } from './fs-errors.js';

/**
 * The validated configuration. Keys with a default in the schema are always
 * present; the others are optional.
 */
export type SapiConfig = FromSchema<typeof configSchema>;

export class ConfigError extends Error {
    override name = 'ConfigError';
}

/** The build's pre-compiled validator, else one compiled now (running from source). */
async function configValidator(): Promise<ValidateFunction> {
    try {
        return (await import('./config-validator.generated.js')).validate;
    } catch (err) {
        // Loaders word "not found" differently: what counts is whether the file is there.
        if (existsSync(fileURLToPath(new URL('./config-validator.generated.js', import.meta.url)))) {
            throw err;
        }
        return (await import('./config-validator.js')).compileConfigValidator();
    }
}
const validate = await configValidator();

/** Validate a parsed config object (a copy is returned, with defaults). */
export function parseConfig(raw: unknown, source = 'config'): SapiConfig {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        if (raw !== undefined && raw !== null) {
            throw new ConfigError(`${source}: the configuration must be a JSON object`);
        }
        raw = {};
    }
    const copy = structuredClone(raw) as Record<string, unknown>;
    // Bunyan level names are case-insensitive, as SetLogLevel takes them.
    if (typeof copy.log_level === 'string') {
        copy.log_level = copy.log_level.toLowerCase();
    }
    if (!validate(copy)) {
        const errors = rank(validate.errors ?? []);
        const more = errors.length > 1 ? ` (and ${errors.length - 1} more problem${errors.length > 2 ? 's' : ''})` : '';
        throw new ConfigError(`${source}: ${describe(errors[0])}${more}`);
    }
    const config = copy as unknown as SapiConfig;
    if (config.store.backend === 'moray' && !config.moray?.host && !config.moray?.srvDomain) {
        throw new ConfigError(`${source}: config key "store.backend" is "moray", which needs "moray.host" or "moray.srvDomain"`);
    }
    return config;
}

export function loadConfig(path: string | undefined): SapiConfig {
    if (!path) {
        return parseConfig({}, 'defaults');
    }
    let text: string;
    try {
        text = readFileSync(path, 'utf8');
    } catch (err) {
        throw new ConfigError(`cannot read config file ${path}: ${errnoText(err)}`);
    }
    let raw: unknown;
    try {
        raw = JSON.parse(text);
    } catch (err) {
        throw new ConfigError(`config file ${path} is not JSON: ${(err as Error).message}`);
    }
    mergeMasterConfig(raw, join(dirname(path), 'sapi-master.config.json'));
    return parseConfig(raw, path);
}

/** The level to hand bunyan: a name, or a level number. */
export function bunyanLevel(level: SapiConfig['log_level']): 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | number {
    return /^\d+$/.test(level) ? Number(level) : (level as 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal');
}

/**
 * Multi-DC: config-agent renders etc/sapi-master.config.json from the sapi
 * service's MASTER_MORAY_IP/PORT. As in 2.1.2: file present with an empty
 * value → master_host null (this DC is the master); file absent → unset.
 */
export function mergeMasterConfig(raw: unknown, path: string): void {
    if (!existsSync(path) || typeof raw !== 'object' || raw === null) {
        return;
    }
    let master: { moray?: { master_host?: unknown; master_port?: unknown } };
    try {
        master = JSON.parse(readFileSync(path, 'utf8')) as typeof master;
    } catch (err) {
        const why = err instanceof SyntaxError ? `is not JSON: ${err.message}` : `cannot be read: ${errnoText(err)}`;
        throw new ConfigError(`master config file ${path} ${why}`);
    }
    const host = master.moray?.master_host;
    const port = master.moray?.master_port;
    const cfg = raw as { moray?: Record<string, unknown> };
    cfg.moray = { ...cfg.moray };
    if (typeof host === 'string' && host !== '' && port !== undefined && port !== '') {
        cfg.moray.master_host = host;
        cfg.moray.master_port = port;
    } else {
        cfg.moray.master_host = null;
    }
}

// ---- error messages

/** Unknown keys first (the likeliest mistake), then the rest in ajv's order. */
function rank(errors: ErrorObject[]): ErrorObject[] {
    // An `if`/`anyOf` wrapper adds nothing to the error inside it.
    const useful = errors.filter((e) => e.keyword !== 'if' && e.keyword !== 'anyOf');
    const list = useful.length > 0 ? useful : errors;
    return [...list.filter((e) => e.keyword === 'additionalProperties'), ...list.filter((e) => e.keyword !== 'additionalProperties')];
}

/** "/moray/cueballOptions/resolvers/0" → "moray.cueballOptions.resolvers[0]". */
function keyName(pointer: string, child?: string): string {
    const parts = pointer
        .split('/')
        .slice(1)
        .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (child !== undefined) {
        parts.push(child);
    }
    return parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc === '' ? p : `${acc}.${p}`), '');
}

function shown(value: unknown): string {
    const s = JSON.stringify(value) ?? String(value);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function describe(e: ErrorObject | undefined): string {
    if (!e) {
        return 'is invalid';
    }
    const params = e.params as Record<string, unknown>;
    if (e.keyword === 'additionalProperties') {
        const extra = String(params.additionalProperty);
        const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
        const best = closest(extra, known);
        const hint = best === undefined ? '' : ` (did you mean "${keyName(e.instancePath, best)}"?)`;
        return `unknown config key "${keyName(e.instancePath, extra)}"${hint}`;
    }
    if (e.keyword === 'required') {
        return `config key "${keyName(e.instancePath, String(params.missingProperty))}" is required`;
    }
    if (e.keyword === 'dependencies') {
        return `config key "${keyName(e.instancePath, String(params.property))}" needs "${keyName(e.instancePath, String(params.missingProperty))}" as well`;
    }
    const key = e.instancePath === '' ? 'the configuration' : `config key "${keyName(e.instancePath)}"`;
    const got = ` (got ${shown(e.data)})`;
    const schema = (e.parentSchema ?? {}) as { minimum?: number; maximum?: number };
    switch (e.keyword) {
        case 'type': {
            const types = ([] as unknown[]).concat(params.type).map(String);
            const want = types.map((t) => (t === 'null' ? 'null' : t === 'integer' || t === 'object' || t === 'array' ? `an ${t}` : `a ${t}`));
            return `${key} must be ${want.join(' or ')}${got}`;
        }
        case 'enum':
            return `${key} must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')}${got}`;
        case 'minimum':
        case 'maximum':
            return schema.minimum !== undefined && schema.maximum !== undefined
                ? `${key} must be from ${schema.minimum} to ${schema.maximum}${got}`
                : `${key} must be ${String(params.comparison)} ${String(params.limit)}${got}`;
        case 'minLength':
            return `${key} must not be empty`;
        case 'format':
            return params.format === 'http-url' ? `${key} must be an http:// or https:// URL${got}` : `${key} must be in ${String(params.format)} format${got}`;
        default:
            return `${key} ${e.message ?? 'is invalid'}${got}`;
    }
}

/** The known key nearest `key` (edit distance, case aside), if it is near enough to be a likely typo. */
export function closest(key: string, known: string[]): string | undefined {
    let best: string | undefined;
    let bestDist = Infinity;
    for (const k of known) {
        const d = levenshtein(key.toLowerCase(), k.toLowerCase());
        if (d < bestDist) {
            best = k;
            bestDist = d;
        }
    }
    return bestDist <= Math.max(2, Math.floor(key.length * 0.4)) ? best : undefined;
}

export function levenshtein(a: string, b: string): number {
    let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
        const cur = [i];
        for (let j = 1; j <= b.length; j++) {
            const cost = a[i - 1] === b[j - 1] ? 0 : 1;
            cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
        }
        prev = cur;
    }
    return prev[b.length] ?? 0;
}
