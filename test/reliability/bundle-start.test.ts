// The server as it is shipped: `node dist/bin/sapi.js` loads the bundle that
// `npm run build` writes (tools/bundle-server.ts; `npm ci` builds it). On
// each store backend it starts, validates a request, stores and reads back an
// object, and stops cleanly on SIGTERM. Its config validator (written by the
// build, not compiled at start) refuses bad configs with the messages the
// source gives. Without a build the test is skipped.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { call } from '../lib/harness.js';
import { exited, freePort, ROOT, waitForPing } from '../lib/child.js';
import { startFakeMoray } from '../lib/fake-moray.js';

const SERVER = join(ROOT, 'dist', 'bin', 'sapi.js');
const BUNDLE = join(ROOT, 'dist', 'server', 'sapi.js');
const built = existsSync(SERVER) && existsSync(BUNDLE);

async function startBuilt(t: { teardown(fn: () => unknown): void }, store: Record<string, unknown>): Promise<{ url: string; proc: ChildProcess }> {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bundle-'));
    const port = await freePort();
    const config = join(dir, 'config.json');
    writeFileSync(
        config,
        JSON.stringify({ port, host: '127.0.0.1', log_level: 'fatal', ...store, store: { path: join(dir, 'sapi.sqlite'), ...(store.store as object) } }),
    );
    const proc = spawn(process.execPath, [SERVER, '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.teardown(() => {
        proc.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
    });
    const url = `http://127.0.0.1:${port}`;
    await waitForPing(url);
    return { url, proc };
}

async function exercise(t: Test, url: string, proc: ChildProcess): Promise<void> {
    const bad = await call(url, 'POST', '/applications', { body: { name: 'x' } });
    t.equal(bad.status, 409, 'a request missing keys is refused by its schema');
    t.equal((bad.body as { code?: string }).code, 'MissingParameter');
    const owner = '930896af-bf8c-48d4-885c-6573a94b1853';
    const made = await call(url, 'POST', '/applications', { body: { name: 'bundled', owner_uuid: owner } });
    t.equal(made.status, 200, 'an application is created');
    const uuid = (made.body as { uuid: string }).uuid;
    const got = await call(url, 'GET', `/applications/${uuid}`);
    t.equal((got.body as { name?: string }).name, 'bundled', 'and read back');
    proc.kill('SIGTERM');
    t.equal(await exited(proc), 0, 'SIGTERM: a clean exit');
}

t.test('the built server on the embedded store', { skip: built ? false : 'no build (npm run build writes dist/)' }, async (t) => {
    const { url, proc } = await startBuilt(t, { store: { backend: 'sqlite' } });
    await exercise(t, url, proc);
});

t.test('the built server on Moray (its client loaded only for this backend)', { skip: built ? false : 'no build (npm run build writes dist/)' }, async (t) => {
    const moray = await startFakeMoray();
    t.teardown(() => moray.close());
    const { url, proc } = await startBuilt(t, { store: { backend: 'moray' }, moray: { host: moray.host, port: moray.port } });
    await exercise(t, url, proc);
});

t.test('the built config validator: the same refusals as from source', { skip: built ? false : 'no build (npm run build writes dist/)' }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-bundle-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const cases: [unknown, string][] = [
        [{ metricPort: 8881 }, 'unknown config key "metricPort" (did you mean "metricsPort"?)'],
        [{ cnapi: { url: 'ftp://cnapi' } }, 'config key "cnapi.url" must be an http:// or https:// URL (got "ftp://cnapi")'],
        [{ port: '99999' }, 'config key "port" must be from 0 to 65535 (got 99999)'],
    ];
    for (const [config, message] of cases) {
        const path = join(dir, 'config.json');
        writeFileSync(path, JSON.stringify(config));
        const run = spawnSync(process.execPath, [SERVER, '-f', path], { encoding: 'utf8' });
        t.equal(run.status, 2, `${JSON.stringify(config)}: exit status 2`);
        t.equal(run.stderr, `sapi: ${path}: ${message}\n`, 'one line naming the key');
    }
});
