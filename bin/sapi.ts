#!/usr/bin/env node
// SAPI server: arguments → loadConfig → bunyan → createStore → createApp
// (the rest of the object graph) → listen → background work.
// Config: `-f PATH`, else $SAPI_CONFIG, else, in a Triton zone (the
// metadata command /usr/sbin/mdata-get exists, or $SAPI_MDATA_GET names
// one), the zone's metadata (lib/zone-config.ts), else built-in defaults
// (port 8080, embedded store under ./data/).
//
// Start-up either serves or stops with one line on stderr that names the
// config key, port or path at fault, and exit status 2. The server and its
// dependencies are loaded only once the arguments and the config are good,
// so a usage or config error answers at once.

import { parseArgs } from 'node:util';

import type Logger from 'bunyan';

import { join } from 'node:path';

import { bunyanLevel, ConfigError, loadConfig, type SapiConfig } from '../lib/config.js';
import { packageRoot, packageVersion } from '../lib/version.js';
import { forgetProtoMode, inZone, loadZoneConfig } from '../lib/zone-config.js';

const EXIT_STARTUP = 2;
/** How long after the port answers the request schemas start compiling. */
const SCHEMA_WARMUP_DELAY_MS = 500;
const USAGE = 'usage: sapi [-f CONFIG_FILE] [--help] [--version]';
const HELP = `${USAGE}

Serve Triton's Services API (SAPI).

  -f, --file PATH   JSON config file (default: $SAPI_CONFIG; else, in a
                    Triton zone, the zone's metadata (see docs/operations.md);
                    else built-in defaults: port 8080, embedded store
                    ./data/sapi.sqlite)
  -h, --help        print this help and exit
  -V, --version     print the version and exit

Exit status: 2 when start-up fails (usage, config, port, store), with one
line on stderr saying why. SIGTERM or SIGINT: stop accepting, finish
in-flight requests, close the store, exit 0.
`;

function fail(message: string): never {
    process.stderr.write(`sapi: ${message}\n`);
    process.exit(EXIT_STARTUP);
}

/**
 * Two warnings about dependencies' code say nothing an operator can act on:
 * - restify pulls in spdy, whose http-deceiver calls
 *   process.binding('http_parser') and so draws DEP0111 at every start;
 * - some dependencies still call `Buffer()` (DEP0005). Node stays quiet
 *   about that for code under node_modules, but the server runs bundled
 *   (dist/server/), where Node cannot tell their code from ours. SAPI's own
 *   code never calls `Buffer()`: the lint config forbids it.
 * Every other warning is printed as usual.
 */
function quietDependencyWarnings(): void {
    const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
    process.emitWarning = (warning: string | Error, ...rest: unknown[]): void => {
        const opt = rest[0];
        const code = typeof opt === 'object' && opt !== null ? (opt as { code?: unknown }).code : rest[1];
        const text = typeof warning === 'string' ? warning : warning.message;
        if ((code === 'DEP0111' && text.includes("'http_parser'")) || code === 'DEP0005') {
            return;
        }
        emit(warning, ...rest);
    };
}

/** Where the config comes from. */
type ConfigSource = { kind: 'file'; path: string } | { kind: 'zone' } | { kind: 'defaults' };

/** The config to read, or an exit for --help, --version and usage errors. */
function parseCommandLine(argv: string[]): ConfigSource {
    let parsed;
    try {
        parsed = parseArgs({
            args: argv,
            options: {
                file: { type: 'string', short: 'f' },
                help: { type: 'boolean', short: 'h' },
                version: { type: 'boolean', short: 'V' },
            },
            strict: true,
            allowPositionals: false,
        });
    } catch (err) {
        const code = (err as { code?: string }).code;
        const msg = (err as Error).message;
        const quoted = /'([^']*)'/.exec(msg)?.[1] ?? '';
        if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /'-f'|'--file'|-f, --file/.test(msg)) {
            fail(`option -f needs a config file path (${USAGE})`);
        }
        if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
            fail(`unknown option ${quoted} (${USAGE})`);
        }
        if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
            fail(`unexpected argument ${JSON.stringify(quoted)} (${USAGE})`);
        }
        fail(`${msg.split('\n')[0] ?? msg} (${USAGE})`);
    }
    const { values } = parsed;
    if (values.help) {
        process.stdout.write(HELP);
        process.exit(0);
    }
    if (values.version) {
        process.stdout.write(`${packageVersion()}\n`);
        process.exit(0);
    }
    if (values.file !== undefined) {
        if (values.file === '') {
            fail(`option -f needs a config file path (${USAGE})`);
        }
        return { kind: 'file', path: values.file };
    }
    if (process.env.SAPI_CONFIG) {
        return { kind: 'file', path: process.env.SAPI_CONFIG };
    }
    return inZone() ? { kind: 'zone' } : { kind: 'defaults' };
}

/** The config of `source`; in a zone, the multi-DC file sits in the install's etc/. */
function readConfig(source: ConfigSource): { config: SapiConfig; fields: Record<string, unknown> } {
    if (source.kind === 'file') {
        return { config: loadConfig(source.path), fields: { configFile: source.path } };
    }
    if (source.kind === 'defaults') {
        return { config: loadConfig(undefined), fields: { config: 'built-in defaults' } };
    }
    const root = packageRoot() ?? process.cwd();
    const { config, dnsDomainFrom } = loadZoneConfig(join(root, 'etc', 'sapi-master.config.json'));
    return { config, fields: { config: 'zone metadata', dnsDomainFrom } };
}

/** One line for a failure during start-up: which key, port or path, and why. */
function describe(err: unknown, config: SapiConfig | undefined, listening: string | undefined): string {
    if (err instanceof ConfigError || (err as Error)?.name === 'StoreOpenError') {
        return (err as Error).message;
    }
    const e = err as NodeJS.ErrnoException & { syscall?: string; address?: string; port?: number };
    if (e?.syscall === 'listen' || listening) {
        const where = listening ?? `${e.address ?? '?'}:${e.port ?? '?'}`;
        if (e.code === 'EADDRINUSE') {
            return `cannot listen on ${where}: the port is in use by another process`;
        }
        if (e.code === 'EACCES') {
            return `cannot listen on ${where}: permission denied (a port below 1024 needs privileges)`;
        }
        if (e.code === 'EADDRNOTAVAIL') {
            return `cannot listen on ${where}: no such address on this host`;
        }
        return `cannot listen on ${where}: ${e.message}`;
    }
    // better-sqlite3's errors carry SQLite's code (SQLITE_READONLY, SQLITE_CANTOPEN, ...).
    if (typeof e?.code === 'string' && e.code.startsWith('SQLITE_') && config) {
        return `store ${config.store.path}: ${e.message} (${e.code})`;
    }
    const text = (err as Error)?.message ?? String(err);
    return `start-up failed: ${text.split('\n')[0] ?? text}`;
}

async function main(): Promise<void> {
    const source = parseCommandLine(process.argv.slice(2));
    let config: SapiConfig | undefined;
    let log: Logger | undefined;
    let listening: string | undefined;
    try {
        const read = readConfig(source);
        config = read.config;
        quietDependencyWarnings();
        const [{ default: bunyan }, { createStore }] = await Promise.all([import('bunyan'), import('../lib/stor/index.js')]);
        log = bunyan.createLogger({
            name: 'sapi',
            level: bunyanLevel(config.log_level),
            serializers: bunyan.stdSerializers,
        });
        // The store first: one that is locked or unwritable fails before the
        // server's modules are even loaded.
        log.info({ ...read.fields, mode: config.mode ?? null, store: config.store.backend }, 'configuration read');
        const setup = await createStore(config, log);
        const store = setup.store;
        const migrateToFull = setup.migrateToFull;
        // In a zone, the switch to full mode also removes SAPI_PROTO_MODE from the zone's metadata.
        const storeSetup =
            source.kind === 'zone' && migrateToFull
                ? {
                      ...setup,
                      migrateToFull: async (): Promise<void> => {
                          await migrateToFull();
                          const failed = forgetProtoMode();
                          if (failed) {
                              log?.warn({ problem: failed }, 'full mode: could not remove SAPI_PROTO_MODE from the zone metadata');
                          }
                      },
                  }
                : setup;
        let app;
        try {
            const { createApp } = await import('../lib/app.js');
            app = await createApp({ config, log, store, setup: storeSetup });
            listening = `${config.host}:${config.port} (config key "port")`;
            const port = await app.listen();
            log.info({ port, mode: app.ctx.mode.current, store: store.name }, 'SAPI listening');
            if (config.metricsPort !== undefined) {
                listening = `${config.adminIp ?? config.host}:${config.metricsPort} (config key "metricsPort")`;
                const mport = await app.listenMetrics();
                log.info({ port: mport }, 'metrics listening on /metrics');
            }
            listening = undefined;
            // Running from source, the request schemas are compiled a little
            // after the port answers (the first compile, with ajv's own setup,
            // takes tens of ms that would otherwise hold up the first
            // requests), one at a time between requests; a request that comes
            // first compiles its own. The build's validators need none of it.
            const { precompileRequestSchemas } = await import('../lib/model/validate.js');
            setTimeout(() => {
                void precompileRequestSchemas().catch((err: unknown) => log?.warn({ err }, 'compiling request schemas failed'));
            }, SCHEMA_WARMUP_DELAY_MS).unref();
        } catch (err) {
            // Let go of the store (and its lock) before exiting.
            await (app ? app.close() : setup.close()).catch(() => undefined);
            throw err;
        }
        handleSignals(app, log);
    } catch (err) {
        if (log && !(err instanceof ConfigError) && (err as Error)?.name !== 'StoreOpenError' && !listening) {
            log.debug({ err }, 'start-up failed');
        }
        fail(describe(err, config, listening));
    }
}

function handleSignals(app: { close(): Promise<void> }, log: Logger): void {
    let stopping = false;
    const stop = (signal: string): void => {
        if (stopping) {
            return;
        }
        stopping = true;
        log.info({ signal }, 'shutting down: finishing in-flight requests');
        app.close().then(
            () => process.exit(0),
            (err: unknown) => {
                log.error({ err }, 'error during shutdown');
                process.exit(1);
            },
        );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
}

await main();
