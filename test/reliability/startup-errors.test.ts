// Start-up failures of bin/sapi.ts, each run as a child process: usage
// errors, every kind of bad config, an unreadable config file, a port in
// use, an unwritable store directory and a read-only database file. Each
// is one line on stderr naming the key, port or path, exit status 2 and no
// stack trace; --help and --version print and exit 0.
//
// Permissions mean nothing to root, so when the tests run as root the
// children that must be refused a file run as the unprivileged user 65534.

import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type SpawnOptions } from 'node:child_process';

import t from 'tap';

import { freePort, ROOT, spawnTs, tsLoaderArgs } from '../lib/child.js';

const asRoot = process.getuid?.() === 0;

/**
 * bin/sapi.ts as the unprivileged user 65534, for whom file permissions
 * hold. tap's process tracking, which it adds to NODE_OPTIONS of every
 * child, would write under .tap/ as that user and fail: env drops it.
 */
function spawnUnprivileged(args: string[]): ReturnType<typeof spawn> {
    return spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, ...tsLoaderArgs(), join(ROOT, 'bin/sapi.ts'), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        uid: 65534,
        gid: 65534,
    });
}

/**
 * Whether the permission cases can be tested: as a normal user they hold
 * anyway; as root they need user 65534 to be able to read this checkout
 * (a clone under a private directory, such as mktemp -d makes, is not).
 */
const permissionsTestable: boolean =
    !asRoot ||
    (await new Promise<boolean>((resolve) => {
        const probe = spawnUnprivileged(['--version']);
        probe.on('error', () => resolve(false));
        probe.on('close', (code) => resolve(code === 0));
    }));
const NO_PERMISSIONS = 'running as root in a checkout user 65534 cannot read: file permissions cannot be tested here';

interface Run {
    code: number | null;
    stdout: string;
    stderr: string;
}

function runSapi(args: string[], opts: SpawnOptions = {}, asUser = false): Promise<Run> {
    return new Promise((resolve) => {
        const proc = asUser && asRoot ? spawnUnprivileged(args) : spawnTs('bin/sapi.ts', args, opts);
        let stdout = '';
        let stderr = '';
        proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
        proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
        // A child that starts serving has gone wrong: stop it so the test ends.
        const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
        proc.on('close', (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
        });
    });
}

/** What these helpers use of a tap test. */
interface Tap {
    equal(found: unknown, wanted: unknown, message: string): boolean;
    match(found: unknown, pattern: RegExp, message: string): boolean;
    notMatch(found: unknown, pattern: RegExp, message: string): boolean;
    teardown(fn: () => unknown): void;
}

/** Exit 2, exactly one line on stderr that matches `re`, no stack trace. */
function failsWith(t: Tap, r: Run, re: RegExp, what: string): void {
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    t.equal(r.code, 2, `${what}: exit status 2`);
    t.equal(lines.length, 1, `${what}: one line on stderr (${JSON.stringify(r.stderr)})`);
    t.match(lines[0] ?? '', re, `${what}: says why`);
    t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

/** Run the jobs four at a time (each is a whole node start); results in order. */
async function inParallel<R>(jobs: (() => Promise<R>)[]): Promise<R[]> {
    const out: R[] = [];
    let next = 0;
    await Promise.all(
        Array.from({ length: 4 }, async () => {
            for (let i = next++; i < jobs.length; i = next++) {
                out[i] = await (jobs[i] as () => Promise<R>)();
            }
        }),
    );
    return out;
}

function tempDir(t: Tap): string {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-startup-'));
    // The unprivileged child must reach the files in it.
    chmodSync(dir, 0o755);
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
}

function writeConfig(dir: string, name: string, config: unknown): string {
    const path = join(dir, name);
    writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config), { mode: 0o644 });
    return path;
}

t.test('--help and --version print and exit 0', async (t) => {
    const help = await runSapi(['--help']);
    t.equal(help.code, 0);
    t.match(help.stdout, /usage: sapi \[-f CONFIG_FILE\]/);
    t.match(help.stdout, /-f, --file PATH/);
    t.equal(help.stderr, '');
    const short = await runSapi(['-h']);
    t.equal(short.code, 0);
    t.match(short.stdout, /usage: sapi/);
    const version = await runSapi(['--version']);
    t.equal(version.code, 0);
    t.match(version.stdout, /^sapi-ts \d+\.\d+\.\d+\n$/);
});

t.test('usage errors: -f without a path, unknown flags, stray arguments', async (t) => {
    const cases: [string, string[], RegExp][] = [
        ['-f alone', ['-f'], /^sapi: option -f needs a config file path \(usage: sapi/],
        ['-f followed by a flag', ['-f', '--help'], /option -f needs a config file path/],
        ['--file= (empty)', ['--file='], /option -f needs a config file path/],
        ['an unknown long flag', ['--port', '80'], /unknown option --port \(usage: sapi/],
        ['an unknown short flag', ['-x'], /unknown option -x/],
        ['a path without -f', ['config.json'], /unexpected argument "config.json"/],
    ];
    const runs = await inParallel(
        cases.map(
            ([, args]) =>
                () =>
                    runSapi(args),
        ),
    );
    cases.forEach(([what, , re], i) => failsWith(t, runs[i] as Run, re, what));
});

t.test('bad config: every key is checked before anything starts', async (t) => {
    const dir = tempDir(t);
    const port = await freePort();
    const base = { port, host: '127.0.0.1', log_level: 'fatal', store: { backend: 'sqlite', path: join(dir, 'sapi.sqlite') } };
    const cases: [string, unknown, RegExp][] = [
        ['unknown top-level key', { ...base, metricPort: 8881 }, /: unknown config key "metricPort" \(did you mean "metricsPort"\?\)$/],
        ['unknown nested key', { ...base, store: { ...base.store, pth: '/x' } }, /unknown config key "store\.pth" \(did you mean "store\.path"\?\)$/],
        ['unknown key, nothing close', { ...base, xyzzy: 1 }, /unknown config key "xyzzy"$/],
        ['unknown key in a service', { ...base, vmapi: { url: 'http://vmapi', uri: 'x' } }, /unknown config key "vmapi\.uri" \(did you mean "vmapi\.url"\?\)/],
        ["log level not bunyan's", { ...base, log_level: 'verbose' }, /config key "log_level" must be one of trace, debug, info, warn, error, fatal/],
        [
            'service url without a scheme',
            { ...base, cnapi: { url: 'cnapi.example.com' } },
            /config key "cnapi\.url" must be an http:\/\/ or https:\/\/ URL \(got "cnapi\.example\.com"\)/,
        ],
        ['service url of another scheme', { ...base, papi: { url: 'ftp://papi' } }, /config key "papi\.url" must be an http/],
        ['port above 65535', { ...base, port: 65536 }, /config key "port" must be from 0 to 65535 \(got 65536\)/],
        ['negative metricsPort', { ...base, metricsPort: -1 }, /config key "metricsPort" must be from 0 to 65535 \(got -1\)/],
        ['port not a number', { ...base, port: 'eighty' }, /config key "port" must be an integer \(got "eighty"\)/],
        ['wrong type of object', { ...base, store: 'sqlite' }, /config key "store" must be an object/],
        ['unknown backend', { ...base, store: { backend: 'postgres' } }, /config key "store\.backend" must be one of sqlite, moray/],
        ['moray backend without moray', { ...base, store: { backend: 'moray', path: base.store.path } }, /needs "moray\.host" or "moray\.srvDomain"/],
        ['not JSON', '{"port": 80,', /config file .*bad-\d+\.json is not JSON/],
        ['not an object', '[]', /the configuration must be a JSON object/],
    ];
    const runs = await inParallel(
        cases.map(
            ([, config], i) =>
                () =>
                    runSapi(['-f', writeConfig(dir, `bad-${i}.json`, config)]),
        ),
    );
    cases.forEach(([what, , re], i) => {
        const r = runs[i] as Run;
        failsWith(t, r, re, what);
        t.match(r.stderr, /^sapi: /, `${what}: prefixed with the program`);
    });
    t.notOk(existsSync(base.store.path), 'no store was created for any of them');
});

t.test('a config file that cannot be read', async (t) => {
    const dir = tempDir(t);
    const missing = join(dir, 'missing.json');
    failsWith(t, await runSapi(['-f', missing]), new RegExp(`cannot read config file ${missing}: no such file or directory`), 'missing file');
    const secret = writeConfig(dir, 'secret.json', { port: 0 });
    chmodSync(secret, 0o600);
    if (permissionsTestable) {
        failsWith(t, await runSapi(['-f', secret], {}, true), new RegExp(`cannot read config file ${secret}: permission denied`), 'unreadable file');
    } else {
        t.comment(`unreadable file not tested: ${NO_PERMISSIONS}`);
    }
    const viaEnv = await runSapi([], { env: { ...process.env, SAPI_CONFIG: missing } });
    failsWith(t, viaEnv, /cannot read config file .*missing\.json/, '$SAPI_CONFIG');
});

t.test('a port in use: one line naming it, and the store is let go', async (t) => {
    const dir = tempDir(t);
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    t.teardown(() => holder.close());
    const port = (holder.address() as { port: number }).port;
    const store = join(dir, 'sapi.sqlite');
    const config = writeConfig(dir, 'config.json', { port, host: '127.0.0.1', log_level: 'fatal', store: { path: store } });
    const r = await runSapi(['-f', config]);
    failsWith(t, r, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(config key "port"\\): the port is in use`), 'port in use');
    t.notOk(existsSync(`${store}.lock`), 'the store lock was released on the way out');

    const metricsConfig = writeConfig(dir, 'metrics.json', {
        port: await freePort(),
        metricsPort: port,
        host: '127.0.0.1',
        log_level: 'fatal',
        store: { path: store },
    });
    failsWith(
        t,
        await runSapi(['-f', metricsConfig]),
        new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(config key "metricsPort"\\)`),
        'metricsPort in use',
    );
});

t.test('an unwritable store directory', { skip: permissionsTestable ? false : NO_PERMISSIONS }, async (t) => {
    const dir = tempDir(t);
    const locked = join(dir, 'locked');
    mkdirSync(locked, { mode: 0o555 });
    chmodSync(locked, 0o555);
    const inside = writeConfig(dir, 'a.json', { port: await freePort(), host: '127.0.0.1', log_level: 'fatal', store: { path: join(locked, 'sapi.sqlite') } });
    failsWith(t, await runSapi(['-f', inside], {}, true), new RegExp(`store directory ${locked} is not writable: permission denied`), 'existing directory');
    const below = writeConfig(dir, 'b.json', {
        port: await freePort(),
        host: '127.0.0.1',
        log_level: 'fatal',
        store: { path: join(locked, 'data', 'sapi.sqlite') },
    });
    failsWith(
        t,
        await runSapi(['-f', below], {}, true),
        new RegExp(`cannot create the store directory ${locked}/data: permission denied`),
        'directory to create',
    );
});

t.test('a read-only database file', { skip: permissionsTestable ? false : NO_PERMISSIONS }, async (t) => {
    const dir = tempDir(t);
    const data = join(dir, 'data');
    mkdirSync(data);
    chmodSync(data, 0o777); // the directory is writable: only the file is not
    const store = join(data, 'sapi.sqlite');
    writeFileSync(store, '');
    chmodSync(store, 0o444);
    const config = writeConfig(dir, 'config.json', { port: await freePort(), host: '127.0.0.1', log_level: 'fatal', store: { path: store } });
    failsWith(t, await runSapi(['-f', config], {}, true), new RegExp(`store file ${store} is not writable: permission denied`), 'read-only file');
    t.notOk(existsSync(`${store}.lock`), 'no lock left behind');
});
