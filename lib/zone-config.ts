// The configuration of a SAPI that runs in a Triton `sapi` zone, built at
// start from the zone's metadata, as SAPI 2.1.2 builds it.
//
// Why not a config file: config-agent renders files from SAPI's own
// GetConfig, and SAPI is the one core service that cannot wait for that. On
// a fresh headnode it is the first core zone to boot (nothing else runs
// yet), and `sdcadm update sapi` reprovisions the only SAPI zone in place:
// in both cases no SAPI would be there to render the file. So everything a
// start needs comes from metadata the zone always has:
//
//   sdc:dns_domain     the DNS domain; ignored when empty or "local", then
//                      customer metadata `dns_domain`, then the `dns_domain=`
//                      line of `usbkey_config` (headnode setup hands the
//                      first SAPI a copy of the USB key's config); none of
//                      them: the start stops
//   sdc:datacenter_name, sdc:server_uuid, the zone's name (its uuid)
//   sdc:nics           the IP of the first NIC tagged "admin" (metrics listen there)
//   SAPI_PROTO_MODE    "true" on the headnode's first boot: proto mode, with
//                      debug logging; absent: full mode; anything else stops the start
//
// From these: Moray found by SRV records `moray.<dc>.<domain>` through the
// resolver `binder.<dc>.<domain>`, and `http://<service>.<dc>.<domain>` for
// VMAPI, CNAPI, IMGAPI, NAPI and PAPI. The API listens on port 80, metrics
// on 8881 of the admin IP, and the embedded store (proto mode's data, full
// mode's local cache) lives in the zone's delegated dataset, /sapi. In proto
// mode Moray is not needed (it does not exist yet on a new headnode); the
// mode recorded in Moray, once there is one, decides from then on.
//
// One file rendered by config-agent is merged when present:
// etc/sapi-master.config.json (the multi-DC master Moray), as for a config file.
//
// Environment, so the zone's layout can run outside a zone (tests, a lab):
//   SAPI_MDATA_GET     the metadata command (default /usr/sbin/mdata-get;
//                      prints a key's value, exits non-zero when it has none)
//   SAPI_DATA_DIR      the data directory (default /sapi)
//   SAPI_PORT, SAPI_METRICS_PORT   other ports than 80 and 8881
//   SAPI_MORAY_HOST    HOST[:PORT] of a Moray to use directly instead of
//                      the SRV name (a DC without binder)

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError, mergeMasterConfig, parseConfig, type SapiConfig } from './config.js';

export const DEFAULT_MDATA_GET = '/usr/sbin/mdata-get';
export const DEFAULT_MDATA_DELETE = '/usr/sbin/mdata-delete';
export const DEFAULT_DATA_DIR = '/sapi';

/** The services whose URL is `http://<name>.<dc>.<domain>`. */
const HTTP_SERVICES = ['vmapi', 'cnapi', 'imgapi', 'napi', 'papi'] as const;

/** A metadata lookup: the value, or undefined when the zone has none for `key`. */
export type MetadataGet = (key: string) => string | undefined;

export interface ZoneFacts {
    /** Metadata lookups. */
    get: MetadataGet;
    /** The zone's name (its uuid), or undefined when it cannot be told. */
    zonename: string | undefined;
    /** Where the embedded store lives. */
    dataDir: string;
    /** The process environment (port and Moray overrides). */
    env?: NodeJS.ProcessEnv;
}

/** Where a value came from, for the start-up log line. */
export interface ZoneConfigResult {
    /** The unvalidated config object (what parseConfig gets). */
    raw: Record<string, unknown>;
    /** Which metadata key gave the DNS domain. */
    dnsDomainFrom: string;
}

function required(get: MetadataGet, key: string): string {
    const v = get(key)?.trim();
    if (!v) {
        throw new ConfigError(`zone metadata "${key}" is missing or empty`);
    }
    return v;
}

/** The DNS domain and the key it came from (see the fallbacks above). */
export function dnsDomainOf(get: MetadataGet): { domain: string; from: string } {
    const vm = get('sdc:dns_domain')?.trim();
    if (vm && vm !== 'local') {
        return { domain: vm, from: 'sdc:dns_domain' };
    }
    const custom = get('dns_domain')?.trim();
    if (custom) {
        return { domain: custom, from: 'dns_domain' };
    }
    const usbkey = get('usbkey_config');
    const line = usbkey
        ?.split('\n')
        .map((l) => l.trim())
        .find((l) => l.startsWith('dns_domain='));
    const fromKey = line
        ?.slice('dns_domain='.length)
        .trim()
        .replace(/^"(.*)"$/, '$1');
    if (fromKey) {
        return { domain: fromKey, from: 'usbkey_config' };
    }
    throw new ConfigError('zone metadata has no DNS domain: "sdc:dns_domain", "dns_domain" and the dns_domain of "usbkey_config" are all missing');
}

/** The IP of the first NIC tagged admin in `sdc:nics`. */
export function adminIpOf(get: MetadataGet): string {
    const text = required(get, 'sdc:nics');
    let nics: unknown;
    try {
        nics = JSON.parse(text);
    } catch {
        throw new ConfigError('zone metadata "sdc:nics" is not JSON');
    }
    const admin = Array.isArray(nics) ? (nics as { nic_tag?: unknown; ip?: unknown }[]).find((n) => n?.nic_tag === 'admin') : undefined;
    if (!admin || typeof admin.ip !== 'string' || admin.ip === '') {
        throw new ConfigError('zone metadata "sdc:nics" has no NIC tagged "admin" with an IP');
    }
    return admin.ip;
}

/** proto for "true", full when absent; anything else is refused. */
export function protoModeOf(get: MetadataGet): boolean {
    const v = get('SAPI_PROTO_MODE');
    if (v === undefined) {
        return false;
    }
    if (v.trim() !== 'true') {
        throw new ConfigError(`zone metadata "SAPI_PROTO_MODE" must be "true" or absent (got ${JSON.stringify(v.trim())})`);
    }
    return true;
}

function envPort(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
    const v = env[name];
    if (v === undefined || v === '') {
        return fallback;
    }
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) {
        throw new ConfigError(`environment ${name} must be a port number (got ${JSON.stringify(v)})`);
    }
    return n;
}

/** The Moray section: the SRV name through binder, or SAPI_MORAY_HOST. */
function morayOf(env: NodeJS.ProcessEnv, dc: string, domain: string): Record<string, unknown> {
    const direct = env.SAPI_MORAY_HOST;
    if (direct) {
        const m = /^(.+?)(?::(\d+))?$/.exec(direct);
        return { host: m?.[1] ?? direct, port: Number(m?.[2] ?? 2020) };
    }
    return { srvDomain: `moray.${dc}.${domain}`, cueballOptions: { resolvers: [`binder.${dc}.${domain}`] } };
}

/** The metadata → config mapping, without validation (unit-tested on its own). */
export function zoneConfig(facts: ZoneFacts): ZoneConfigResult {
    const { get } = facts;
    const env = facts.env ?? {};
    const proto = protoModeOf(get);
    const { domain, from } = dnsDomainOf(get);
    const instanceUuid = facts.zonename?.trim() || get('sdc:uuid')?.trim();
    if (!instanceUuid) {
        throw new ConfigError('cannot tell the zone\'s uuid: "zonename" failed and zone metadata "sdc:uuid" is missing');
    }
    const dc = required(get, 'sdc:datacenter_name');
    const raw: Record<string, unknown> = {
        port: envPort(env, 'SAPI_PORT', 80),
        mode: proto ? 'proto' : 'full',
        datacenter_name: dc,
        instanceUuid,
        serverUuid: required(get, 'sdc:server_uuid'),
        adminIp: adminIpOf(get),
        metricsPort: envPort(env, 'SAPI_METRICS_PORT', 8881),
        log_level: proto ? 'debug' : 'info',
        store: { backend: 'moray', path: join(facts.dataDir, 'sapi.sqlite') },
        moray: morayOf(env, dc, domain),
    };
    for (const svc of HTTP_SERVICES) {
        raw[svc] = { url: `http://${svc}.${dc}.${domain}` };
    }
    return { raw, dnsDomainFrom: from };
}

/** Metadata read with a command (mdata-get or a stand-in): a non-zero exit means no value. */
export function commandMetadata(command: string): MetadataGet {
    if (!existsSync(command)) {
        throw new ConfigError(`the metadata command ${command} does not exist`);
    }
    return (key) => {
        try {
            return execFileSync(command, [key], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 30_000 }).replace(/\n$/, '');
        } catch {
            return undefined;
        }
    };
}

function zonename(): string | undefined {
    try {
        return execFileSync('zonename', [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim() || undefined;
    } catch {
        return undefined;
    }
}

/** True when start-up should read zone metadata (no config file was named). */
export function inZone(env: NodeJS.ProcessEnv = process.env): boolean {
    return Boolean(env.SAPI_MDATA_GET) || existsSync(DEFAULT_MDATA_GET);
}

/**
 * The validated config of this zone. `masterConfigPath` is where
 * config-agent renders the multi-DC master Moray file.
 */
export function loadZoneConfig(masterConfigPath: string, env: NodeJS.ProcessEnv = process.env): { config: SapiConfig; dnsDomainFrom: string } {
    const get = commandMetadata(env.SAPI_MDATA_GET || DEFAULT_MDATA_GET);
    const { raw, dnsDomainFrom } = zoneConfig({ get, zonename: zonename(), dataDir: env.SAPI_DATA_DIR || DEFAULT_DATA_DIR, env });
    mergeMasterConfig(raw, masterConfigPath);
    return { config: parseConfig(raw, 'zone metadata'), dnsDomainFrom };
}

/**
 * After the switch to full mode, the zone's SAPI_PROTO_MODE is removed (as
 * 2.1.2 does), so the zone's setup scripts and a later start see a full-mode
 * SAPI. The mode recorded in the store decides either way, so a failure is
 * only worth a warning. Returns what went wrong, or null.
 */
export function forgetProtoMode(env: NodeJS.ProcessEnv = process.env): string | null {
    const command = env.SAPI_MDATA_DELETE || DEFAULT_MDATA_DELETE;
    try {
        execFileSync(command, ['SAPI_PROTO_MODE'], { stdio: 'ignore', timeout: 30_000 });
        return null;
    } catch (err) {
        return `${command} SAPI_PROTO_MODE failed: ${(err as Error).message.split('\n')[0] ?? ''}`;
    }
}
