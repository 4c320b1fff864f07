// The project's Moray test server (fake-moray.ts) on its own, in the
// foreground, for trying SAPI's Moray backend without a Triton DC:
//
//   npm run moray-test-server -- --port 2020
//
// Listens on 127.0.0.1 and prints `listening on PORT` (the bound port;
// --port 0 picks a free one) once it accepts connections. Everything is in
// memory and gone when it exits (SIGINT/SIGTERM: exit status 0). Filters on
// an index field that is still being reindexed behave as moray-server 2.x
// (the field is left out of the SQL part; see fake-moray.ts).

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { FakeMoray } from './fake-moray.js';

const USAGE = 'usage: moray-test-server [--port PORT]   (default 2020; 0: any free port)';

export interface ServerArgs {
    port: number;
}

/** Parse the command line; throws an Error with a usage message when it is wrong. */
export function parseArgs(argv: string[]): ServerArgs {
    let port = 2020;
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i] as string;
        let v: string | undefined;
        if (a === '--port' || a === '-p') {
            v = argv[++i];
        } else if (a.startsWith('--port=')) {
            v = a.slice('--port='.length);
        } else if (a === '--help' || a === '-h') {
            throw new Error(USAGE);
        } else {
            throw new Error(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
        }
        if (v === undefined || !/^\d+$/.test(v) || Number(v) > 65535) {
            throw new Error(`--port needs a number from 0 to 65535\n${USAGE}`);
        }
        port = Number(v);
    }
    return { port };
}

/** Start the server; resolves once it is listening (after printing `listening on PORT`). */
export async function startServer(args: ServerArgs, print: (line: string) => void = console.log): Promise<FakeMoray> {
    const fake = new FakeMoray({ port: args.port, excludeReindexingFields: true });
    // Nobody reads its request log: keeping it would grow without bound.
    fake.recordRequests = false;
    await fake.start();
    print(`listening on ${fake.port}`);
    return fake;
}

/** The command: run until SIGINT/SIGTERM, then close and exit 0. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
    let args: ServerArgs;
    try {
        args = parseArgs(argv);
    } catch (err) {
        console.error((err as Error).message);
        process.exitCode = 2;
        return;
    }
    let fake: FakeMoray;
    try {
        fake = await startServer(args);
    } catch (err) {
        console.error(`moray-test-server: ${(err as Error).message}`);
        process.exitCode = 1;
        return;
    }
    let stopping = false;
    const stop = (): void => {
        if (stopping) {
            return;
        }
        stopping = true;
        void fake.close().then(
            () => process.exit(0),
            () => process.exit(1),
        );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
}

function isMain(): boolean {
    const entry = process.argv[1];
    if (!entry) {
        return false;
    }
    try {
        return pathToFileURL(realpathSync(entry)).href === import.meta.url;
    } catch {
        return false;
    }
}

if (isMain()) {
    void main();
}
