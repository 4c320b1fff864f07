// One process per embedded store: a second bin/sapi.ts on the same
// store.path fails at once, naming the store and the pid that holds it,
// while the first keeps serving; a lock left by a SIGKILLed process does not
// block a restart; a clean shutdown removes the lock.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import t from 'tap';

import { childSapi, exited, freePort, spawnTs } from '../lib/child.js';

interface Run {
    code: number | null;
    stderr: string;
    ms: number;
}

function runSapi(args: string[]): Promise<Run> {
    const t0 = Date.now();
    return new Promise((resolve) => {
        const proc = spawnTs('bin/sapi.ts', args);
        let stderr = '';
        proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
        const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
        proc.on('close', (code) => {
            clearTimeout(timer);
            resolve({ code, stderr, ms: Date.now() - t0 });
        });
    });
}

/** A second config on the first one's store, on a port of its own. */
async function secondConfig(first: string): Promise<string> {
    const config = JSON.parse(readFileSync(first, 'utf8')) as Record<string, unknown>;
    const path = join(dirname(first), 'second.json');
    writeFileSync(path, JSON.stringify({ ...config, port: await freePort() }));
    return path;
}

function storeOf(configPath: string): string {
    return (JSON.parse(readFileSync(configPath, 'utf8')) as { store: { path: string } }).store.path;
}

t.test('a second process on the same store fails at once; the first keeps serving', async (t) => {
    const child = await childSapi(t);
    const first = await child.start();
    const store = storeOf(child.config);
    t.ok(existsSync(`${store}.lock`), 'the running server holds a lock file beside the store');

    const r = await runSapi(['-f', await secondConfig(child.config)]);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    t.equal(r.code, 2, 'exit status 2');
    t.equal(lines.length, 1, `one line on stderr (${JSON.stringify(r.stderr)})`);
    t.match(lines[0] ?? '', new RegExp(`^sapi: store ${store} is in use by another SAPI process \\(pid ${first.pid}\\)`), 'names the store and the holder');
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');

    const ping = await fetch(`${child.url}/ping`);
    t.equal(ping.status, 200, 'the first still serves');
    const post = await fetch(`${child.url}/applications`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'after-second', owner_uuid: '930896af-bf8c-48d4-885c-6573a94b1853' }),
    });
    t.equal(post.status, 200, 'and still writes');
    t.equal(first.exitCode, null, 'and is still running');
});

t.test('a lock left by a SIGKILLed server does not block a restart', async (t) => {
    const child = await childSapi(t);
    const first = await child.start();
    const store = storeOf(child.config);
    first.kill('SIGKILL');
    await exited(first);
    const lock = `${store}.lock`;
    t.ok(existsSync(lock), 'the killed server left its lock file');
    t.match(readFileSync(lock, 'utf8'), new RegExp(`"pid":${first.pid}\\b`), 'naming the dead pid');

    const second = await child.start(); // waits for /ping
    t.not(second.pid, first.pid);
    t.match(readFileSync(lock, 'utf8'), new RegExp(`"pid":${second.pid}\\b`), 'the restarted server took the lock over');
    t.equal((await fetch(`${child.url}/ping`)).status, 200);

    // A lock file that is not a lock at all (truncated, hand-made) is stale too.
    second.kill('SIGKILL');
    await exited(second);
    writeFileSync(lock, '');
    const third = await child.start();
    t.match(readFileSync(lock, 'utf8'), new RegExp(`"pid":${third.pid}\\b`), 'an empty lock file is taken over');

    third.kill('SIGTERM');
    t.equal(await exited(third), 0, 'clean exit on SIGTERM');
    t.notOk(existsSync(lock), 'a clean shutdown removes the lock file');
});
