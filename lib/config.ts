// loadConfig(path): JSON file → ajv (defaults, coercion of config-agent's
// string values) → SapiConfig. Fails fast, naming the bad key.

import { readFileSync } from 'node:fs';

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
    return parseConfig(raw, path);
}
