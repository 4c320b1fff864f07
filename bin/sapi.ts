#!/usr/bin/env node
// SAPI server: loadConfig → bunyan → createStore → createApp (the rest of the object graph) → listen.
// Config: `-f PATH`, else $SAPI_CONFIG, else built-in defaults (port 8080,
// embedded store under ./data/).

import bunyan from 'bunyan';

import { createApp } from '../lib/app.js';
import { ConfigError, loadConfig } from '../lib/config.js';
import { createStore } from '../lib/stor/index.js';

function configPath(argv: string[]): string | undefined {
    const i = argv.indexOf('-f');
    if (i >= 0) {
        return argv[i + 1];
    }
    return process.env.SAPI_CONFIG || undefined;
}

async function main(): Promise<void> {
    let config;
    try {
        config = loadConfig(configPath(process.argv.slice(2)));
    } catch (err) {
        if (err instanceof ConfigError) {
            process.stderr.write(`sapi: ${err.message}\n`);
            process.exit(2);
        }
        throw err;
    }
    const log = bunyan.createLogger({
        name: 'sapi',
        level: config.log_level as bunyan.LogLevel,
        serializers: bunyan.stdSerializers,
    });
    const setup = await createStore(config, log);
    const store = setup.store;
    const app = await createApp({ config, log, store, hooks: setup });
    const port = await app.listen();
    log.info({ port, mode: app.ctx.mode.current, store: store.name }, 'SAPI listening');
    if (config.metricsPort !== undefined) {
        const mport = await app.listenMetrics();
        log.info({ port: mport }, 'metrics listening on /metrics');
    }

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

main().catch((err: unknown) => {
    process.stderr.write(`sapi: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
});
