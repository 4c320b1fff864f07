// `npm run demo` (tools/demo.ts) as a child process: once it says it is
// ready, the SAPI it names runs a rollout on the fake DC, and SIGINT or
// SIGTERM stops it with exit status 0; --data keeps the store.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { DEMO_AGENTS, DEMO_IMAGES, DEMO_SERVERS } from '../../tools/demo-world.js';
import { exited, spawnTs } from '../lib/child.js';
import { call } from '../lib/harness.js';

const VM_AGENT = DEMO_AGENTS['vm-agent'];
const NEW_VM_AGENT = DEMO_IMAGES[VM_AGENT.image];

/** Starts the demo; resolves with the child and what it printed once ready. */
async function startDemo(args: string[]): Promise<{ child: ReturnType<typeof spawnTs>; out: () => string; url: string; dataDir: string }> {
    const child = spawnTs('tools/demo.ts', ['--port', '0', '--task-ms', '100', ...args]);
    let out = '';
    let err = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    await new Promise<void>((resolve, reject) => {
        const check = (): void => {
            if (out.includes('Ctrl-C stops it')) resolve();
        };
        child.stdout?.on('data', check);
        child.once('exit', (code) => reject(new Error(`the demo exited (${String(code)}) before it was ready: ${out}${err}`)));
    });
    const url = /SAPI\s+(http:\/\/\S+)/.exec(out)?.[1];
    const dataDir = /data\s+(\S+)/.exec(out)?.[1];
    if (!url || !dataDir) throw new Error(`no SAPI URL or data directory in: ${out}`);
    return { child, out: () => out, url, dataDir };
}

t.test('the demo serves a DC to roll out in, and stops on SIGINT', async (t) => {
    const demo = await startDemo([]);
    t.teardown(() => {
        if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
    });
    const banner = demo.out();
    t.match(banner, /CNAPI\s+http:\/\/127\.0\.0\.1:\d+/, 'names the fake CNAPI');
    t.match(banner, /IMGAPI\s+http:\/\/127\.0\.0\.1:\d+/, 'names the fake IMGAPI');
    t.match(banner, /VMAPI\s+http:\/\/127\.0\.0\.1:\d+/, 'names the fake VMAPI');
    t.match(banner, /npx sapiadm -u http:\/\/127\.0\.0\.1:\d+ rollout /, 'says how to start a rollout, on its port');

    const [headnode, cn1] = DEMO_SERVERS.map((s) => s.uuid);
    const started = await call(demo.url, 'POST', '/rollouts', {
        body: { service_uuid: VM_AGENT.uuid, image_uuid: NEW_VM_AGENT, servers: [headnode, cn1] },
    });
    t.equal(started.status, 200, 'the rollout starts', started.body);
    let r = started.body;
    while (r.state === 'running') {
        await new Promise((res) => setTimeout(res, 50));
        r = (await call(demo.url, 'GET', `/rollouts/${String(started.body.uuid)}`)).body;
    }
    t.equal(r.state, 'succeeded', 'and succeeds', r);
    t.same(
        r.items.map((i: { state: string; from_image: string }) => [i.state, i.from_image]),
        [
            ['succeeded', DEMO_IMAGES['vm-agent@3.11.2']],
            ['succeeded', DEMO_IMAGES['vm-agent@3.11.2']],
        ],
        'both servers went from the old vm-agent',
    );
    const insts = await call(demo.url, 'GET', `/instances?service_uuid=${VM_AGENT.uuid}&server_uuid=${cn1}`, { version: '~2' });
    t.equal(insts.body[0]?.params?.image_uuid, NEW_VM_AGENT, "SAPI records cn1's vm-agent at the new image");

    demo.child.kill('SIGINT');
    t.equal(await exited(demo.child), 0, 'SIGINT: exit status 0');
    t.notOk(existsSync(demo.dataDir), 'its temporary data directory is gone');
});

t.test('--data keeps the store; SIGTERM stops it', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-demo-test-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const first = await startDemo(['--data', dir]);
    t.equal(first.dataDir, dir, 'uses the directory given');
    first.child.kill('SIGTERM');
    t.equal(await exited(first.child), 0, 'SIGTERM: exit status 0');
    t.ok(existsSync(join(dir, 'sapi.sqlite')), 'the store is kept');

    const again = await startDemo(['--data', dir]);
    t.teardown(() => {
        if (again.child.exitCode === null) again.child.kill('SIGKILL');
    });
    t.match(again.out(), /kept from an earlier run/, 'a second start says the data is kept');
    const apps = await call(again.url, 'GET', '/applications?name=sdc');
    t.equal(apps.body.length, 1, 'and the DC is recorded once');
    again.child.kill('SIGINT');
    t.equal(await exited(again.child), 0, 'exit status 0');
});
