// The release, booted as a Triton sapi zone would boot it, in a scratch
// root: `tools/release.sh` builds the package, which is unpacked; the
// first boot's setup.sh runs with stand-ins for SmartOS's commands
// (mdata-get/-put/-delete, zonename, zfs, svccfg, svcadm) and for
// sdc-scripts' lib/util.sh; SMF's start line, taken from the shipped
// manifest, serves proto mode from zone metadata alone (no Moray yet, as on
// a new headnode); the switch to full mode works once Moray is there; and a
// later boot (configure.sh) starts it again, in full mode, with the same data.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t, { type Test } from 'tap';

import { FakeMoray } from '../lib/fake-moray.js';
import { exited, freePort, ROOT, waitForPing } from '../lib/child.js';

const ZONE = 'a3a5c1d2-7b3e-4c6f-9d21-0f4e5b6c7d8e';
const SERVER = '564d9f3e-8e7a-4ab0-a1a2-5b5f5b7a3c01';
const OWNER = '930896af-bf8c-48d4-885c-6573a94b1853';
const PREFIX = '/opt/smartdc/sapi';

const scratch = mkdtempSync(join(tmpdir(), 'sapi-zone-boot-'));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

const stubs = join(scratch, 'stubs');
const md = join(scratch, 'metadata');
const calls = join(scratch, 'calls.log');
mkdirSync(stubs);
mkdirSync(md);

function stub(name: string, body: string): void {
    writeFileSync(join(stubs, name), `#!/bin/bash\n${body}\n`);
    chmodSync(join(stubs, name), 0o755);
}

// Metadata: one file per key. mdata-get prints the value, exit 1 when there is none.
stub('mdata-get', `[ -f "${md}/$1" ] || { echo "No metadata for '$1'" >&2; exit 1; }\ncat "${md}/$1"; echo`);
stub('mdata-put', `echo "mdata-put $1" >> "${calls}"; printf '%s' "$2" > "${md}/$1"`);
stub('mdata-delete', `echo "mdata-delete $1" >> "${calls}"; rm -f "${md}/$1"`);
stub('zonename', `echo ${ZONE}`);
// The zone has its delegated dataset; its mountpoint starts as vmadm leaves it.
stub(
    'zfs',
    `echo "zfs $*" >> "${calls}"
case "$1" in
list) [ "$2" = "zones/${ZONE}/data" ] ;;
get) cat "${scratch}/zfs-mountpoint" 2>/dev/null || echo "/zones/${ZONE}/data" ;;
set) echo "\${2#mountpoint=}" > "${scratch}/zfs-mountpoint" ;;
*) exit 1 ;;
esac`,
);
stub('svccfg', `echo "svccfg $*" >> "${calls}"`);
stub('svcadm', `echo "svcadm $*" >> "${calls}"`);

// sdc-scripts, as far as setup.sh uses it: each function records its call.
const sdcScripts = join(scratch, 'sdc-scripts');
mkdirSync(join(sdcScripts, 'lib'), { recursive: true });
writeFileSync(
    join(sdcScripts, 'lib', 'util.sh'),
    `function fatal { echo "fatal: $*" >&2; exit 1; }
function warn { echo "warning: $*" >&2; }
function sdc_common_setup { echo "sdc_common_setup proto=$SAPI_PROTO_MODE manifests=$CONFIG_AGENT_LOCAL_MANIFESTS_DIRS sapi-url=$(mdata-get sapi-url)" >> "${calls}"; }
function sdc_log_rotation_add { echo "sdc_log_rotation_add $1" >> "${calls}"; }
function sdc_log_rotation_setup_end { echo "sdc_log_rotation_setup_end" >> "${calls}"; }
function sdc_setup_complete { echo "sdc_setup_complete" >> "${calls}"; }
`,
);

function setMetadata(values: Record<string, string>): void {
    for (const [k, v] of Object.entries(values)) {
        writeFileSync(join(md, k), v);
    }
}
const metadata = (key: string): string | undefined => (existsSync(join(md, key)) ? readFileSync(join(md, key), 'utf8') : undefined);
const callLog = (): string[] => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []);

// A new headnode's first SAPI: proto mode, and the DNS domain only in the USB key's config.
setMetadata({
    'sdc:dns_domain': 'local',
    'sdc:datacenter_name': 'coal',
    'sdc:server_uuid': SERVER,
    'sdc:nics': JSON.stringify([{ interface: 'net0', nic_tag: 'admin', ip: '127.0.0.1', mac: '90:b8:d0:00:00:01' }]),
    'sdc:alias': 'sapi0',
    usbkey_config: 'datacenter_name=coal\ndns_domain=coal.example.com\nadmin_nic=90:b8:d0:00:00:01\n',
    SAPI_PROTO_MODE: 'true',
});

let zoneRoot = '';
const bootEnv = (): NodeJS.ProcessEnv => ({ SAPI_BOOT_ROOT: zoneRoot, SAPI_BOOT_PATH: `${stubs}:/usr/bin:/bin`, HOME: scratch });

t.test('make release writes the package in the Triton image layout', async (t) => {
    const out = join(scratch, 'out');
    const r = spawnSync(join(ROOT, 'tools', 'release.sh'), ['--out', out, '--work', join(scratch, 'work'), '--stamp', 'test-20261207T000000Z-g0'], {
        env: { ...process.env, SDC_SCRIPTS_DIR: sdcScripts },
        encoding: 'utf8',
    });
    t.equal(r.status, 0, r.stderr);
    const tarball = join(out, 'sapi-pkg-test-20261207T000000Z-g0.tar.gz');
    t.ok(existsSync(tarball), 'sapi-pkg-<stamp>.tar.gz');
    const unpacked = join(scratch, 'unpacked');
    mkdirSync(unpacked);
    t.equal(spawnSync('tar', ['-xzf', tarball, '-C', unpacked]).status, 0, 'it unpacks');
    t.same(readdirSync(unpacked).sort(), ['root', 'site']);
    zoneRoot = join(unpacked, 'root');
    const inst = join(zoneRoot, PREFIX);
    for (const p of [
        'build/node/bin/node',
        'dist/bin/sapi.js',
        'dist/server/sapi.js',
        'dist/bin/sapiadm.js',
        'bin/sapiadm',
        'package.json',
        'smf/manifests/sapi.xml',
        'sapi_manifests/sapi/manifest.json',
        'sapi_manifests/sapi/template',
        'node_modules/better-sqlite3/build/Release/better_sqlite3.node',
        'node_modules/moray/package.json',
        'node_modules/restify/package.json',
    ]) {
        t.ok(existsSync(join(inst, p)), p);
    }
    for (const dev of ['typescript', 'tap', 'esbuild', 'eslint', 'tsx', 'prettier']) {
        t.notOk(existsSync(join(inst, 'node_modules', dev)), `no ${dev} (development only)`);
    }
    for (const p of ['setup.sh', 'configure.sh', 'lib/util.sh']) {
        t.ok(existsSync(join(zoneRoot, 'opt/smartdc/boot', p)), `boot/${p}`);
    }
});

/** SMF's start line from the shipped manifest, pointed at the scratch root. */
function smfStartLine(): string {
    const xml = readFileSync(join(zoneRoot, PREFIX, 'smf/manifests/sapi.xml'), 'utf8');
    const m = /<exec_method[^>]*name="start"[^>]*exec="([^"]+)"/s.exec(xml);
    if (!m?.[1]) {
        throw new Error('no start method in sapi.xml');
    }
    const line = m[1].replace(/&amp;/g, '&').trim();
    if (!line.endsWith('&')) {
        throw new Error(`the start method should put SAPI in the background: ${line}`);
    }
    return line.slice(0, -1).trim().split(PREFIX).join(join(zoneRoot, PREFIX));
}

let apiPort = 0;
let morayPort = 0;
const url = (): string => `http://127.0.0.1:${apiPort}`;

/** Start SAPI the way SMF does (in the foreground here, so the test holds the process). */
function smfStart(t: Test): ChildProcess {
    const proc = spawn('/bin/sh', ['-c', `exec ${smfStartLine()}`], {
        cwd: join(zoneRoot, PREFIX),
        env: {
            PATH: `${stubs}:/usr/bin:/bin`,
            SAPI_MDATA_GET: join(stubs, 'mdata-get'),
            SAPI_MDATA_DELETE: join(stubs, 'mdata-delete'),
            SAPI_DATA_DIR: join(zoneRoot, 'sapi'),
            SAPI_PORT: String(apiPort),
            SAPI_METRICS_PORT: '0',
            SAPI_MORAY_HOST: `127.0.0.1:${morayPort}`,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    proc.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    t.teardown(async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGKILL');
            await exited(proc);
        }
    });
    proc.on('exit', (code) => {
        if (code !== 0 && code !== null) {
            t.comment(`sapi exited ${code}: ${log.slice(-2000)}`);
        }
    });
    return proc;
}

async function stop(proc: ChildProcess): Promise<number | null> {
    proc.kill('SIGTERM');
    return exited(proc);
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const r = await fetch(`${url()}${path}`, {
        method,
        headers: { 'content-type': 'application/json', 'accept-version': '~2' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.text();
    return { status: r.status, body: text ? (JSON.parse(text) as unknown) : null };
}

let appUuid = '';

t.test('first boot: setup.sh mounts /sapi, finds the DNS domain, imports SMF and points sapi-url at this zone', async (t) => {
    const r = spawnSync('bash', [join(zoneRoot, 'opt/smartdc/boot/setup.sh')], { env: bootEnv(), encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr.slice(-3000));
    const log = callLog();
    t.ok(log.includes(`zfs set mountpoint=/sapi zones/${ZONE}/data`), 'the delegated dataset is mounted at /sapi');
    t.ok(existsSync(join(zoneRoot, 'sapi')), '/sapi exists');
    t.equal(metadata('metricPorts'), '8881', 'metricPorts for cmon-agent');
    t.equal(metadata('dns_domain'), 'coal.example.com', 'the DNS domain from usbkey_config, kept in metadata for the server');
    t.ok(log.includes(`svccfg import ${join(zoneRoot, PREFIX, 'smf/manifests/sapi.xml')}`), 'the SMF service is imported');
    t.equal(metadata('sapi-url'), 'http://127.0.0.1', 'sapi-url is this zone');
    t.ok(log.includes(`sdc_common_setup proto=true manifests=${PREFIX} sapi-url=http://127.0.0.1`), 'the common setup, after sapi-url');
    t.ok(log.includes('sdc_log_rotation_add sapi'), 'log rotation');
    t.equal(log[log.length - 1], 'sdc_setup_complete', 'setup complete, last');
    t.match(readFileSync(join(zoneRoot, 'root/.profile'), 'utf8'), `${PREFIX}/bin`, 'sapiadm on the PATH of login shells');
    t.ok(log.indexOf(`svccfg import ${join(zoneRoot, PREFIX, 'smf/manifests/sapi.xml')}`) < log.indexOf('mdata-put sapi-url'), 'SAPI is started before');
});

t.test("SMF's start line serves proto mode from zone metadata alone (no Moray yet)", async (t) => {
    apiPort = await freePort();
    morayPort = await freePort();
    const proc = smfStart(t);
    await waitForPing(url());
    t.same((await api('GET', '/mode')).body, 'proto');
    const app = await api('POST', '/applications', { name: 'sdc', owner_uuid: OWNER, metadata: { dns_domain: 'coal.example.com' } });
    t.equal(app.status, 200);
    appUuid = (app.body as { uuid: string }).uuid;
    const svc = await api('POST', '/services', { name: 'sapi', application_uuid: appUuid, type: 'vm' });
    t.equal(svc.status, 200);
    t.ok(existsSync(join(zoneRoot, 'sapi', 'sapi.sqlite')), 'the data is in /sapi');
    t.equal(await stop(proc), 0, 'SIGTERM stops it cleanly');
});

t.test('the switch to full mode works once Moray is there, and drops SAPI_PROTO_MODE', async (t) => {
    const moray = new FakeMoray({ port: morayPort, excludeReindexingFields: true });
    await moray.start();
    t.teardown(() => moray.close());
    const proc = smfStart(t);
    await waitForPing(url());
    t.same((await api('GET', '/mode')).body, 'proto', 'still proto after a restart: Moray holds no SAPI data');
    const sw = await api('POST', '/mode?mode=full');
    t.equal(sw.status, 204, JSON.stringify(sw.body));
    t.same((await api('GET', '/mode')).body, 'full');
    t.equal(metadata('SAPI_PROTO_MODE'), undefined, 'SAPI_PROTO_MODE is gone from the zone metadata');
    t.equal(await stop(proc), 0);

    // A later boot: configure.sh imports SMF again, and SAPI starts in full mode with the same data.
    const r = spawnSync('bash', [join(zoneRoot, 'opt/smartdc/boot/configure.sh')], { env: bootEnv(), encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr.slice(-3000));
    t.equal(callLog().filter((l) => l.startsWith('svccfg import')).length, 2, 'SMF imported again');
    const again = smfStart(t);
    await waitForPing(url());
    t.same((await api('GET', '/mode')).body, 'full');
    const apps = await api('GET', '/applications?name=sdc');
    t.same(
        (apps.body as { uuid: string }[]).map((a) => a.uuid),
        [appUuid],
        'the application made in proto mode, now from Moray',
    );
    t.equal(((await api('GET', `/services?application_uuid=${appUuid}`)).body as unknown[]).length, 1);

    // sapiadm, as an operator types it in the zone (the wrapper runs the
    // shipped node). Not spawnSync: Moray runs in this process.
    const adm = spawn(join(zoneRoot, PREFIX, 'bin/sapiadm'), ['apps', 'list', '--json'], {
        env: { PATH: '/usr/bin:/bin', SAPI_URL: url() },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    adm.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    adm.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    t.equal(await exited(adm), 0, err);
    t.match(out, appUuid, 'sapiadm lists it');
    t.equal(await stop(again), 0);
});
