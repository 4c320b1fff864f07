// loadConfig(path): JSON file → ajv (defaults, coercion of config-agent's
// string values) → SapiConfig. Fails fast, naming the bad key.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { Ajv } from 'ajv';

import { configSchema } from '../schemas/config.js';

export interface DownstreamConfig {
    url: string;
}

export interface SapiConfig {
    port: number;
    host: string;
    mode?: 'proto' | 'full';
    datacenter_name?: string;
    instanceUuid?: string;
    serverUuid?: string;
    server_uuid?: string;
    adminIp?: string;
    metricsPort?: number;
    maxHttpSockets: number;
    log_level: string;
    maxBodyBytes: number;
    requestTimeoutMs: number;
    store: { backend: 'sqlite' | 'moray'; path: string };
    moray?: {
        host?: string;
        port?: number;
        srvDomain?: string;
        cueballOptions?: Record<string, unknown>;
        master_host?: string | null;
        master_port?: number | string | null;
    };
    vmapi?: DownstreamConfig;
    cnapi?: DownstreamConfig;
    imgapi?: DownstreamConfig;
    napi?: DownstreamConfig;
    papi?: DownstreamConfig;
    deploy: {
        jobPollIntervalMs: number;
        jobDeadlineMs: number;
        taskPollIntervalMs: number;
        taskDeadlineMs: number;
        cnAgentTaskDeadlineMs: number;
        downstreamTimeoutMs: number;
    };
}

export class ConfigError extends Error {
    override name = 'ConfigError';
}

const ajv = new Ajv({ useDefaults: true, coerceTypes: true, allErrors: true, strict: false });
const validate = ajv.compile(configSchema);

/** Validate a parsed config object (a copy is returned, with defaults). */
export function parseConfig(raw: unknown, source = 'config'): SapiConfig {
    const copy = structuredClone(raw ?? {}) as Record<string, unknown>;
    if (!validate(copy)) {
        const e = validate.errors?.[0];
        const where = e?.instancePath || '/';
        throw new ConfigError(`${source}: ${where} ${e?.message ?? 'is invalid'}`);
    }
    return copy as unknown as SapiConfig;
}

export function loadConfig(path: string | undefined): SapiConfig {
    if (!path) {
        return parseConfig({}, 'defaults');
    }
    let text: string;
    try {
        text = readFileSync(path, 'utf8');
    } catch (err) {
        throw new ConfigError(`cannot read config ${path}: ${(err as Error).message}`);
    }
    let raw: unknown;
    try {
        raw = JSON.parse(text);
    } catch (err) {
        throw new ConfigError(`config ${path} is not JSON: ${(err as Error).message}`);
    }
    mergeMasterConfig(raw, join(dirname(path), 'sapi-master.config.json'));
    return parseConfig(raw, path);
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
        throw new ConfigError(`master config ${path} is not JSON: ${(err as Error).message}`);
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
