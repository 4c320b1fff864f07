// The configuration of a SAPI in a Triton zone, from the zone's metadata:
// every DNS-domain fallback, proto and full mode, the admin IP, the zone's
// uuid, a missing key, the environment overrides, the multi-DC file, and
// a start that stops with one line and exit status 2.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { ConfigError, parseConfig } from '../../lib/config.js';
import { commandMetadata, dnsDomainOf, loadZoneConfig, zoneConfig, type MetadataGet } from '../../lib/zone-config.js';
import { exited, spawnTs } from '../lib/child.js';

const ZONE = '6e2ee3a4-3f2b-4a55-9d3c-6d9a1b4c2f10';
const SERVER = '564d9f3e-8e7a-4ab0-a1a2-5b5f5b7a3c01';
const NICS = JSON.stringify([
    { interface: 'net0', mac: '90:b8:d0:1a:2b:3c', nic_tag: 'external', ip: '203.0.113.7' },
    { interface: 'net1', mac: '90:b8:d0:4d:5e:6f', nic_tag: 'admin', ip: '10.99.99.26' },
]);

/** The metadata of a sapi zone in full mode, with `over` replacing (undefined: removing) keys. */
function metadata(over: Record<string, string | undefined> = {}): MetadataGet {
    const md: Record<string, string | undefined> = {
        'sdc:dns_domain': 'example.com',
        'sdc:datacenter_name': 'us-east-1',
        'sdc:server_uuid': SERVER,
        'sdc:nics': NICS,
        ...over,
    };
    return (key) => md[key];
}

t.test('full mode: Moray through binder, the services by DNS, port 80, metrics on the admin IP', async (t) => {
    const { raw, dnsDomainFrom } = zoneConfig({ get: metadata(), zonename: ZONE, dataDir: '/sapi' });
    t.equal(dnsDomainFrom, 'sdc:dns_domain');
    const c = parseConfig(raw);
    t.equal(c.port, 80);
    t.equal(c.mode, 'full');
    t.equal(c.log_level, 'info');
    t.equal(c.datacenter_name, 'us-east-1');
    t.equal(c.instanceUuid, ZONE);
    t.equal(c.serverUuid, SERVER);
    t.equal(c.adminIp, '10.99.99.26', 'the NIC tagged admin, not the first one');
    t.equal(c.metricsPort, 8881);
    t.same(c.store, { backend: 'moray', path: '/sapi/sapi.sqlite' });
    t.same(c.moray, { srvDomain: 'moray.us-east-1.example.com', cueballOptions: { resolvers: ['binder.us-east-1.example.com'] }, port: 2020 });
    t.equal(c.vmapi?.url, 'http://vmapi.us-east-1.example.com');
    t.equal(c.cnapi?.url, 'http://cnapi.us-east-1.example.com');
    t.equal(c.imgapi?.url, 'http://imgapi.us-east-1.example.com');
    t.equal(c.napi?.url, 'http://napi.us-east-1.example.com');
    t.equal(c.papi?.url, 'http://papi.us-east-1.example.com');
});

t.test('SAPI_PROTO_MODE=true: proto mode with debug logging; any other value stops the start', async (t) => {
    const c = parseConfig(zoneConfig({ get: metadata({ SAPI_PROTO_MODE: 'true' }), zonename: ZONE, dataDir: '/sapi' }).raw);
    t.equal(c.mode, 'proto');
    t.equal(c.log_level, 'debug');
    t.throws(() => zoneConfig({ get: metadata({ SAPI_PROTO_MODE: 'false' }), zonename: ZONE, dataDir: '/sapi' }), {
        name: 'ConfigError',
        message: 'zone metadata "SAPI_PROTO_MODE" must be "true" or absent (got "false")',
    });
});

t.test('the DNS domain: sdc:dns_domain, else dns_domain, else usbkey_config; "local" and empty do not count', async (t) => {
    const usbkey = 'datacenter_name=us-east-1\ndns_domain=usb.example.org\nadmin_nic=00:00:00:00:00:01\n';
    t.same(dnsDomainOf(metadata()), { domain: 'example.com', from: 'sdc:dns_domain' });
    t.same(dnsDomainOf(metadata({ 'sdc:dns_domain': 'local', dns_domain: 'meta.example.net' })), { domain: 'meta.example.net', from: 'dns_domain' });
    t.same(dnsDomainOf(metadata({ 'sdc:dns_domain': '', dns_domain: 'meta.example.net' })), { domain: 'meta.example.net', from: 'dns_domain' });
    t.same(dnsDomainOf(metadata({ 'sdc:dns_domain': undefined, dns_domain: 'meta.example.net', usbkey_config: usbkey })), {
        domain: 'meta.example.net',
        from: 'dns_domain',
    });
    t.same(dnsDomainOf(metadata({ 'sdc:dns_domain': 'local', usbkey_config: usbkey })), { domain: 'usb.example.org', from: 'usbkey_config' });
    t.throws(() => dnsDomainOf(metadata({ 'sdc:dns_domain': 'local', usbkey_config: 'datacenter_name=x\n' })), {
        name: 'ConfigError',
        message: /has no DNS domain/,
    });
    t.throws(() => dnsDomainOf(metadata({ 'sdc:dns_domain': undefined })), ConfigError);
    const c = parseConfig(zoneConfig({ get: metadata({ 'sdc:dns_domain': 'local', dns_domain: 'meta.example.net' }), zonename: ZONE, dataDir: '/d' }).raw);
    t.equal(c.moray?.srvDomain, 'moray.us-east-1.meta.example.net', 'the fallback is what the names are built from');
});

t.test('a missing or unusable key stops the start, naming it', async (t) => {
    const fails = (over: Record<string, string | undefined>, message: string | RegExp): void => {
        t.throws(() => zoneConfig({ get: metadata(over), zonename: ZONE, dataDir: '/sapi' }), { name: 'ConfigError', message }, JSON.stringify(over));
    };
    fails({ 'sdc:server_uuid': undefined }, 'zone metadata "sdc:server_uuid" is missing or empty');
    fails({ 'sdc:server_uuid': '' }, 'zone metadata "sdc:server_uuid" is missing or empty');
    fails({ 'sdc:datacenter_name': undefined }, 'zone metadata "sdc:datacenter_name" is missing or empty');
    fails({ 'sdc:nics': undefined }, 'zone metadata "sdc:nics" is missing or empty');
    fails({ 'sdc:nics': '[{"nic_tag":' }, 'zone metadata "sdc:nics" is not JSON');
    fails({ 'sdc:nics': JSON.stringify([{ nic_tag: 'external', ip: '203.0.113.7' }]) }, 'zone metadata "sdc:nics" has no NIC tagged "admin" with an IP');
    t.throws(() => zoneConfig({ get: metadata(), zonename: undefined, dataDir: '/sapi' }), { name: 'ConfigError', message: /cannot tell the zone's uuid/ });
    const viaUuid = zoneConfig({ get: metadata({ 'sdc:uuid': ZONE }), zonename: undefined, dataDir: '/sapi' });
    t.equal(viaUuid.raw.instanceUuid, ZONE, 'without zonename, sdc:uuid names the zone');
});

t.test('the environment moves the data, the ports and Moray (to run the layout outside a zone)', async (t) => {
    const env = { SAPI_PORT: '18080', SAPI_METRICS_PORT: '0', SAPI_MORAY_HOST: '127.0.0.1:2222' };
    const c = parseConfig(zoneConfig({ get: metadata(), zonename: ZONE, dataDir: '/tmp/zone/sapi', env }).raw);
    t.equal(c.port, 18080);
    t.equal(c.metricsPort, 0);
    t.same(c.moray, { host: '127.0.0.1', port: 2222 });
    t.equal(c.store.path, '/tmp/zone/sapi/sapi.sqlite');
    t.same(parseConfig(zoneConfig({ get: metadata(), zonename: ZONE, dataDir: '/d', env: { SAPI_MORAY_HOST: 'moray.lab' } }).raw).moray, {
        host: 'moray.lab',
        port: 2020,
    });
    t.throws(() => zoneConfig({ get: metadata(), zonename: ZONE, dataDir: '/d', env: { SAPI_PORT: 'eighty' } }), {
        message: 'environment SAPI_PORT must be a port number (got "eighty")',
    });
});

/** A stand-in for mdata-get: prints the key's value from a JSON file, exit 1 when absent. */
function stubMdataGet(dir: string, md: Record<string, string>): string {
    writeFileSync(join(dir, 'metadata.json'), JSON.stringify(md));
    const cmd = join(dir, 'mdata-get');
    writeFileSync(
        cmd,
        `#!/bin/sh\nexec "${process.execPath}" -e 'const md = require(process.argv[1]); const v = md[process.argv[2]]; if (v === undefined) { console.error("No metadata for " + process.argv[2]); process.exit(1); } process.stdout.write(v + "\\n");' "${join(dir, 'metadata.json')}" "$1"\n`,
    );
    chmodSync(cmd, 0o755);
    return cmd;
}

t.test('read through the metadata command, with the multi-DC master file merged', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-zone-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const cmd = stubMdataGet(dir, {
        'sdc:dns_domain': 'example.com',
        'sdc:datacenter_name': 'dc1',
        'sdc:server_uuid': SERVER,
        'sdc:nics': NICS,
        'sdc:uuid': ZONE,
    });
    const get = commandMetadata(cmd);
    t.equal(get('sdc:datacenter_name'), 'dc1');
    t.equal(get('no-such-key'), undefined, 'a non-zero exit is no value');
    const master = join(dir, 'sapi-master.config.json');
    writeFileSync(master, JSON.stringify({ moray: { master_host: '10.1.0.9', master_port: '2020' } }));
    const { config } = loadZoneConfig(master, { SAPI_MDATA_GET: cmd, SAPI_DATA_DIR: join(dir, 'data'), PATH: '/nonexistent' });
    t.equal(config.instanceUuid, ZONE);
    t.equal(config.moray?.master_host, '10.1.0.9');
    t.equal(config.moray?.srvDomain, 'moray.dc1.example.com', 'the local Moray is kept');
    t.equal(config.store.path, join(dir, 'data', 'sapi.sqlite'));
    t.throws(() => commandMetadata(join(dir, 'missing-command')), { message: /does not exist/ });
});

t.test('bin/sapi in a zone with a key missing: one line on stderr, exit status 2', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-zone-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const cmd = stubMdataGet(dir, { 'sdc:dns_domain': 'example.com', 'sdc:datacenter_name': 'dc1', 'sdc:nics': NICS, 'sdc:uuid': ZONE });
    const env: NodeJS.ProcessEnv = { ...process.env, SAPI_MDATA_GET: cmd, SAPI_DATA_DIR: join(dir, 'data') };
    delete env.SAPI_CONFIG;
    const proc = spawnTs('bin/sapi.ts', [], { env });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    t.equal(await exited(proc), 2);
    t.equal(stderr, 'sapi: zone metadata "sdc:server_uuid" is missing or empty\n');
});
