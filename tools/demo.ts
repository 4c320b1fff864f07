// `npm run demo`: SAPI-TS in full mode in a small fake DC (tools/demo-world.ts),
// in the foreground until Ctrl-C. Prints, once it serves, where everything
// is and what to try.

import { parseArgs } from 'node:util';

import type { DemoWorld } from './demo-world.js';

const USAGE = 'usage: npm run demo -- [--port PORT] [--data DIR] [--task-ms MS]';
const HELP = `${USAGE}

SAPI-TS in full mode on the embedded store, wired to fake CNAPI, IMGAPI and
VMAPI servers on 127.0.0.1 that hold a small DC: five compute nodes with
agents at older versions than IMGAPI has. Runs until Ctrl-C.

  --port PORT    SAPI's port (default 8080; 0: any free port)
  --data DIR     keep SAPI's data in DIR (default: a fresh temporary
                 directory, removed at exit). The fakes always start afresh.
  --task-ms MS   how long a CN takes per agent install (default 2000)
  -h, --help     print this help
`;

function fail(message: string): never {
    process.stderr.write(`demo: ${message}\n${USAGE}\n`);
    process.exit(2);
}

function options(): { port: number; dataDir?: string; taskDurationMs: number } {
    let values;
    try {
        values = parseArgs({
            args: process.argv.slice(2),
            options: {
                port: { type: 'string' },
                data: { type: 'string' },
                'task-ms': { type: 'string' },
                help: { type: 'boolean', short: 'h' },
            },
            strict: true,
            allowPositionals: false,
        }).values;
    } catch (err) {
        fail((err as Error).message);
    }
    if (values.help) {
        process.stdout.write(HELP);
        process.exit(0);
    }
    const int = (v: string | undefined, name: string, dflt: number, max: number): number => {
        if (v === undefined) return dflt;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > max) fail(`--${name} must be an integer between 0 and ${max}`);
        return n;
    };
    return {
        port: int(values.port, 'port', 8080, 65535),
        taskDurationMs: int(values['task-ms'], 'task-ms', 2000, 600_000),
        ...(values.data !== undefined ? { dataDir: values.data } : {}),
    };
}

/** What to type next. */
function banner(w: DemoWorld, { DEMO_AGENTS, DEMO_IMAGES, DEMO_SERVERS }: typeof import('./demo-world.js')): string {
    const port = new URL(w.url).port;
    const sapi = port === '8080' ? 'localhost:8080' : `localhost:${port}`;
    const u = port === '8080' ? '' : ` -u ${w.url}`;
    const [headnode, cn1] = DEMO_SERVERS;
    const cn3 = DEMO_SERVERS.find((s) => s.status !== undefined);
    const servers = DEMO_SERVERS.map((s) => `    ${s.hostname.padEnd(9)} ${s.uuid}${s.status ? `  (${s.status}: down)` : ''}`).join('\n');
    const lines = [
        `SAPI-TS demo: full mode, a fake DC with ${DEMO_SERVERS.length} compute nodes${cn3 ? ` (${cn3.hostname} is down)` : ''}`,
        '',
        `  SAPI     ${w.url}`,
        `  CNAPI    ${w.cnapi.url}   (fake)`,
        `  IMGAPI   ${w.imgapi.url}   (fake)`,
        `  VMAPI    ${w.vmapi.url}   (fake)`,
        `  data     ${w.dataDir}${w.seeded ? '' : '   (kept from an earlier run: SAPI may disagree with the fresh fakes)'}`,
        ...(w.logFile ? [`  log      ${w.logFile}`] : []),
        '',
        '  servers:',
        servers,
        '',
        'Try:',
        `  curl -s '${sapi}/services?type=agent'`,
        `  curl -s '${sapi}/instances?server_uuid=${headnode?.uuid}' -H 'Accept-Version: ~2'`,
        `  npx sapiadm${u} instances --server ${cn1?.uuid}`,
        `  npx sapiadm${u} check server-agents --cnapi-url ${w.cnapi.url}`,
        `  npx sapiadm${u} rollout vm-agent ${DEMO_IMAGES[DEMO_AGENTS['vm-agent'].image]} --concurrency 2`,
        `  npx sapiadm${u} rollout start --all-agents --exclude marlin-agent --canary 1`,
        `  curl -s ${sapi}/rollouts`,
        '',
        'The examples under Rollouts and Agents in docs/index.md run here (each section',
        'from a fresh start). Ctrl-C stops it.',
        '',
    ];
    return lines.join('\n');
}

async function main(): Promise<void> {
    const opts = options();
    // The world (and the server's modules) load once the arguments are good.
    const demoWorld = await import('./demo-world.js');
    let world: DemoWorld;
    try {
        world = await demoWorld.startDemoWorld(opts);
    } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'EADDRINUSE') {
            fail(`port ${opts.port} is in use (try --port)`);
        }
        fail(`could not start: ${e.message ?? String(err)}`);
    }
    process.stdout.write(banner(world, demoWorld));
    let stopping = false;
    const stop = (): void => {
        if (stopping) return;
        stopping = true;
        process.stdout.write('stopping\n');
        world.close().then(
            () => process.exit(0),
            (err: unknown) => {
                process.stderr.write(`demo: error while stopping: ${String(err)}\n`);
                process.exit(1);
            },
        );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
}

await main();
