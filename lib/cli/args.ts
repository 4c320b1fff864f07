// Parsing command-line values: UUIDs, lists, numbers, and the
// `-p key=value` / `--params JSON` inputs of create and update.

import { readFileSync } from 'node:fs';

import type { Command } from 'commander';

import { UsageError } from './errors.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(v: string): boolean {
    return UUID_RE.test(v);
}

export function mustUuid(v: string, what: string): string {
    if (!isUuid(v)) {
        throw new UsageError(`${what} must be a UUID: ${v}`);
    }
    return v;
}

/** Comma/space separated UUIDs (`--servers a,b`). */
export function uuidList(v: string, what: string): string[] {
    const out = v
        .split(/[\s,]+/)
        .map((s) => s.trim())
        .filter(Boolean);
    if (out.length === 0) {
        throw new UsageError(`${what}: give at least one UUID`);
    }
    return out.map((u) => mustUuid(u, what));
}

export function positiveInt(v: string, what: string): number {
    if (!/^\d+$/.test(v) || Number(v) < 1) {
        throw new UsageError(`${what} must be a positive integer: ${v}`);
    }
    return Number(v);
}

/** Commander collector for repeatable options (`-p a=1 -p b=2`). */
export function collect(value: string, previous: string[] = []): string[] {
    return [...previous, value];
}

export type Dict = Record<string, unknown>;

function isPlainObject(v: unknown): v is Dict {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `JSON` or `@FILE`: a JSON object given inline or in a file. */
export function jsonObjectArg(raw: string, what: string): Dict {
    let text = raw;
    if (raw.startsWith('@')) {
        try {
            text = readFileSync(raw.slice(1), 'utf8');
        } catch (err) {
            throw new UsageError(`${what}: cannot read ${raw.slice(1)}: ${(err as Error).message}`);
        }
    }
    let v: unknown;
    try {
        v = JSON.parse(text);
    } catch (err) {
        throw new UsageError(`${what}: invalid JSON: ${(err as Error).message}`);
    }
    if (!isPlainObject(v)) {
        throw new UsageError(`${what}: must be a JSON object`);
    }
    return v;
}

/**
 * One `KEY=VALUE` (a string), `KEY:=JSON` (any JSON value) or, when
 * `bareKeys` (update --action delete), a bare `KEY`.
 */
export function assignment(raw: string, what: string, bareKeys: boolean): [string, unknown] {
    const m = /^([^=:]+)(:?=)([\s\S]*)$/.exec(raw);
    if (!m) {
        if (bareKeys && raw.length > 0 && !raw.includes('=')) {
            return [raw, true];
        }
        throw new UsageError(`${what}: expected KEY=VALUE or KEY:=JSON, got "${raw}"`);
    }
    const key = (m[1] ?? '').trim();
    if (key.length === 0) {
        throw new UsageError(`${what}: empty key in "${raw}"`);
    }
    const value = m[3] ?? '';
    if (m[2] === '=') {
        return [key, value];
    }
    try {
        return [key, JSON.parse(value) as unknown];
    } catch (err) {
        throw new UsageError(`${what}: invalid JSON for ${key}: ${(err as Error).message}`);
    }
}

/** `--params JSON` (or `@FILE`) with `-p` assignments applied on top; undefined when neither was given. */
export function mapInput(json: string | undefined, pairs: string[] | undefined, what: string, bareKeys = false): Dict | undefined {
    if (json === undefined && (!pairs || pairs.length === 0)) {
        return undefined;
    }
    const out: Dict = json === undefined ? {} : jsonObjectArg(json, `--${what}`);
    for (const p of pairs ?? []) {
        const [k, v] = assignment(p, what, bareKeys);
        out[k] = v;
    }
    return out;
}

export type UpdateAction = 'update' | 'replace' | 'delete';

export function updateAction(raw: string | undefined): UpdateAction {
    if (raw === undefined) {
        return 'update';
    }
    if (raw === 'update' || raw === 'replace' || raw === 'delete') {
        return raw;
    }
    throw new UsageError(`--action must be update, replace or delete, not "${raw}"`);
}

/** Text appended to the --help of create/update commands. */
export const INPUT_HELP = `
Inputs:
  -p KEY=VALUE      sets params.KEY to the string VALUE
  -p KEY:=JSON      sets params.KEY to a JSON value (-p ram:=1024, -p tags:='{"a":1}')
  --params JSON     the whole params object (or @FILE to read it from a file);
                    -p entries are applied on top
  -m / --metadata   the same for metadata
  --manifests JSON  manifests object {"<name>": "<manifest uuid>"} (or @FILE)
`;

// ---- the maps of create and update bodies

export interface MapOpts {
    param?: string[];
    params?: string;
    meta?: string[];
    metadata?: string;
    manifests?: string;
    metadataSchema?: string;
}

/** params / metadata / manifests / metadata_schema of a create or update body. */
export function mapsOf(o: MapOpts, bareKeys = false): Dict {
    const body: Dict = {};
    const params = mapInput(o.params, o.param, 'params', bareKeys);
    if (params) body.params = params;
    const metadata = mapInput(o.metadata, o.meta, 'metadata', bareKeys);
    if (metadata) body.metadata = metadata;
    if (o.manifests !== undefined) body.manifests = jsonObjectArg(o.manifests, '--manifests');
    if (o.metadataSchema !== undefined) body.metadata_schema = jsonObjectArg(o.metadataSchema, '--metadata-schema');
    return body;
}

/** The options every create/update command takes for its maps. */
export function withMapOptions(cmd: Command): Command {
    return cmd
        .option('-p, --param <KEY=VALUE>', 'set params.KEY (repeatable; KEY:=JSON for a JSON value)', collect)
        .option('--params <JSON>', 'params as a JSON object, or @FILE')
        .option('-m, --meta <KEY=VALUE>', 'set metadata.KEY (repeatable; KEY:=JSON for a JSON value)', collect)
        .option('--metadata <JSON>', 'metadata as a JSON object, or @FILE')
        .option('--manifests <JSON>', 'manifests {"name": "<manifest uuid>"} as JSON, or @FILE')
        .addHelpText('after', INPUT_HELP);
}

/** An update must change something. */
export function needsChange(body: Dict): void {
    if (!Object.keys(body).some((k) => k !== 'action')) {
        throw new UsageError('nothing to update: give -p, -m, --params, --metadata or --manifests');
    }
}
