// Configuration: defaults, the minimal complete file, fail-fast errors
// naming the key (unknown keys with the closest known one), log levels,
// service URLs, ports, config-agent's string values, the multi-DC master
// file, and the shipped config-agent template rendered as a DC would.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { bunyanLevel, ConfigError, loadConfig, mergeMasterConfig, parseConfig, type SapiConfig } from '../../lib/config.js';
import { zoneConfig } from '../../lib/zone-config.js';

t.test('no file: port 8080 and the embedded store under ./data/', async (t) => {
    const c = loadConfig(undefined);
    t.equal(c.port, 8080);
    t.same(c.store, { backend: 'sqlite', path: './data/sapi.sqlite' });
    t.equal(c.log_level, 'info');
});

t.test('the minimal file is complete and valid', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-cfg-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify({ port: 18080, store: { backend: 'sqlite', path: '/some/dir' } }));
    const c = loadConfig(path);
    t.equal(c.port, 18080);
    t.same(c.store, { backend: 'sqlite', path: '/some/dir' });
    t.equal(c.deploy.taskPollIntervalMs, 1000, 'defaults filled in');
});

t.test('bad values fail fast, naming the key', async (t) => {
    t.throws(() => parseConfig({ port: 'eighty' }), { name: 'ConfigError', message: /config key "port" must be an integer \(got "eighty"\)/ });
    t.throws(() => parseConfig({ store: { backend: 'postgres' } }), /config key "store\.backend" must be one of sqlite, moray \(got "postgres"\)/);
    t.throws(() => loadConfig('/nonexistent/config.json'), ConfigError);
    t.equal(parseConfig({ port: '8081', moray: { port: '2021' } }).port, 8081, "config-agent's strings are coerced");
});

t.test('etc/sapi-master.config.json sets or clears the master moray', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sapi-cfg-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify({ moray: { host: '10.0.0.5' } }));
    t.equal(loadConfig(path).moray?.master_host, undefined, 'no file: unset');
    writeFileSync(join(dir, 'sapi-master.config.json'), JSON.stringify({ moray: { master_host: '10.1.0.9', master_port: '2020' } }));
    const c = loadConfig(path);
    t.equal(c.moray?.master_host, '10.1.0.9');
    t.equal(String(c.moray?.master_port), '2020');
    t.equal(c.moray?.host, '10.0.0.5', 'the local moray is kept');
    writeFileSync(join(dir, 'sapi-master.config.json'), JSON.stringify({ moray: { master_host: '', master_port: '' } }));
    t.equal(loadConfig(path).moray?.master_host, null, 'empty values: this DC is the master');
});

t.test('unknown keys at every level fail, suggesting the closest known key', async (t) => {
    const bad = (raw: unknown): string => {
        try {
            parseConfig(raw, 'config.json');
        } catch (err) {
            t.type(err, ConfigError);
            return (err as Error).message;
        }
        t.fail(`accepted ${JSON.stringify(raw)}`);
        return '';
    };
    t.equal(bad({ metricPort: 8881 }), 'config.json: unknown config key "metricPort" (did you mean "metricsPort"?)');
    t.equal(bad({ logLevel: 'debug' }), 'config.json: unknown config key "logLevel" (did you mean "log_level"?)');
    t.equal(bad({ store: { pth: '/x' } }), 'config.json: unknown config key "store.pth" (did you mean "store.path"?)');
    t.equal(bad({ moray: { hots: 'm' } }), 'config.json: unknown config key "moray.hots" (did you mean "moray.host"?)');
    t.equal(
        bad({ deploy: { taskPolIntervalMs: 5 } }),
        'config.json: unknown config key "deploy.taskPolIntervalMs" (did you mean "deploy.taskPollIntervalMs"?)',
    );
    t.equal(bad({ vmapi: { url: 'http://vmapi', urls: [] } }), 'config.json: unknown config key "vmapi.urls" (did you mean "vmapi.url"?)');
    t.equal(
        bad({ moray: { host: 'm', cueballOptions: { resolver: ['binder'] } } }),
        'config.json: unknown config key "moray.cueballOptions.resolver" (did you mean "moray.cueballOptions.resolvers"?)',
    );
    t.equal(
        bad({ moray: { host: 'm', cueballOptions: { recovery: { default: { retries: 1, timeout: 100, delay: 10, maxdelay: 50 } } } } }),
        'config.json: unknown config key "moray.cueballOptions.recovery.default.maxdelay" (did you mean "moray.cueballOptions.recovery.default.maxDelay"?)',
    );
    t.equal(bad({ frobnicate: true }), 'config.json: unknown config key "frobnicate"', 'no suggestion when nothing is close');
    t.match(
        bad({ metricPort: 1, xyzzy: 2, port: -1 }),
        /unknown config key "metricPort".* \(and 2 more problems\)$/,
        'the first problem, and a count of the rest',
    );
});

t.test('log levels: bunyan names (any case) and level numbers', async (t) => {
    for (const name of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) {
        t.equal(parseConfig({ log_level: name }).log_level, name);
    }
    t.equal(parseConfig({ log_level: 'DEBUG' }).log_level, 'debug', 'case does not matter');
    t.equal(bunyanLevel(parseConfig({ log_level: 30 }).log_level), 30, 'a number');
    t.equal(bunyanLevel(parseConfig({ log_level: '50' }).log_level), 50, 'a number as config-agent renders it');
    t.equal(bunyanLevel(parseConfig({}).log_level), 'info');
    t.throws(
        () => parseConfig({ log_level: 'verbose' }),
        /config key "log_level" must be one of trace, debug, info, warn, error, fatal, 10, 20, 30, 40, 50, 60 \(got "verbose"\)/,
    );
    t.throws(() => parseConfig({ log_level: 35 }), /config key "log_level" must be one of/);
});

t.test('service URLs are http or https URLs with a host', async (t) => {
    for (const svc of ['vmapi', 'cnapi', 'imgapi', 'napi', 'papi']) {
        t.equal(parseConfig({ [svc]: { url: `http://${svc}.coal.example.com` } })[svc as 'vmapi']?.url, `http://${svc}.coal.example.com`);
        t.ok(parseConfig({ [svc]: { url: `https://10.99.99.9:8443/base` } }), `${svc}: https with a port and path`);
        for (const url of [`${svc}.coal.example.com`, `ftp://${svc}`, 'http://', '']) {
            t.throws(
                () => parseConfig({ [svc]: { url } }),
                new RegExp(`config key "${svc}\\.url" must be an http:// or https:// URL`),
                `${svc}: ${JSON.stringify(url)}`,
            );
        }
        t.throws(() => parseConfig({ [svc]: {} }), new RegExp(`config key "${svc}\\.url" is required`));
    }
});

t.test('ports: 0 to 65535', async (t) => {
    t.equal(parseConfig({ port: 0 }).port, 0, 'port 0: any free port');
    t.equal(parseConfig({ port: 65535, metricsPort: 65535 }).metricsPort, 65535);
    t.equal(parseConfig({ metricsPort: '8881' }).metricsPort, 8881, 'config-agent renders numbers as strings');
    t.throws(() => parseConfig({ port: 65536 }), /config key "port" must be from 0 to 65535 \(got 65536\)/);
    t.throws(() => parseConfig({ port: -1 }), /config key "port" must be from 0 to 65535/);
    t.throws(() => parseConfig({ metricsPort: 70000 }), /config key "metricsPort" must be from 0 to 65535 \(got 70000\)/);
    t.throws(() => parseConfig({ metricsPort: 80.5 }), /config key "metricsPort" must be an integer/);
    t.throws(() => parseConfig({ moray: { host: 'm', port: 0 } }), /config key "moray\.port" must be from 1 to 65535/);
});

t.test('rules across keys', async (t) => {
    t.throws(() => parseConfig({ store: { backend: 'moray' } }), /config key "store\.backend" is "moray", which needs "moray\.host" or "moray\.srvDomain"/);
    t.ok(parseConfig({ store: { backend: 'moray' }, moray: { srvDomain: 'moray.coal.example.com' } }));
    t.throws(
        () => parseConfig({ moray: { host: 'm', cueballOptions: { target: 2 } } }),
        /config key "moray\.cueballOptions\.target" needs "moray\.cueballOptions\.maximum" as well/,
    );
    t.ok(parseConfig({ moray: { host: 'm', cueballOptions: { target: 2, maximum: 8 } } }));
    t.throws(() => parseConfig([]), /the configuration must be a JSON object/);
    t.throws(() => parseConfig('port=80'), /the configuration must be a JSON object/);
});

t.test('the type: keys with a default are always there, the others optional', async (t) => {
    // Compile-time checks (npm test typechecks this file).
    type Has<K extends keyof SapiConfig> = object extends Pick<SapiConfig, K> ? false : true;
    const required: [Has<'port'>, Has<'host'>, Has<'log_level'>, Has<'store'>, Has<'deploy'>, Has<'maxBodyBytes'>] = [true, true, true, true, true, true];
    const optional: [Has<'metricsPort'>, Has<'moray'>, Has<'vmapi'>, Has<'mode'>] = [false, false, false, false];
    const store: SapiConfig['store'] = { backend: 'sqlite', path: '/x' };
    const poll: number = parseConfig({}).deploy.taskPollIntervalMs;
    t.same([required, optional, store.backend, poll], [[true, true, true, true, true, true], [false, false, false, false], 'sqlite', 1000]);
});

/**
 * The part of config-agent's mustache (hogan) the shipped templates use:
 * {{{KEY}}} and {{KEY}} values, {{#KEY}}…{{/KEY}} and {{^KEY}}…{{/KEY}} sections.
 */
function render(template: string, vars: Record<string, string | undefined>): string {
    const value = (k: string): string | undefined => vars[k];
    let out = template;
    for (;;) {
        const next = out.replace(/\{\{([#^])([\w.]+)\}\}([\s\S]*?)\{\{\/\2\}\}/, (_m, kind: string, k: string, body: string) =>
            (kind === '#') === Boolean(value(k)) ? body : '',
        );
        if (next === out) {
            break;
        }
        out = next;
    }
    return out.replace(/\{\{\{([\w.]+)\}\}\}|\{\{([\w.]+)\}\}/g, (_m, a: string | undefined, b: string | undefined) => value((a ?? b) as string) ?? '');
}

t.test('what config-agent renders from the shipped template merges into the zone config', async (t) => {
    const root = join(import.meta.dirname, '..', '..');
    const manifest = JSON.parse(readFileSync(join(root, 'sapi_manifests', 'sapi', 'manifest.json'), 'utf8')) as { path: string };
    t.equal(manifest.path, '/opt/smartdc/sapi/etc/sapi-master.config.json', 'the one file config-agent renders for SAPI');
    const template = readFileSync(join(root, 'sapi_manifests', 'sapi', 'template'), 'utf8');
    const md: Record<string, string> = {
        'sdc:dns_domain': 'example.com',
        'sdc:datacenter_name': 'us-east-1',
        'sdc:server_uuid': '44454c4c-4400-1046-8050-b5c04f383432',
        'sdc:nics': JSON.stringify([{ nic_tag: 'admin', ip: '10.99.99.32' }]),
    };
    const dir = mkdtempSync(join(tmpdir(), 'sapi-cfg-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const masterPath = join(dir, 'sapi-master.config.json');
    const variants: [string, Record<string, string> | null][] = [
        ['no master file', null],
        ['this DC is the master', { MASTER_MORAY_IP: '', MASTER_MORAY_PORT: '' }],
        ['another DC is the master', { MASTER_MORAY_IP: '10.1.0.9', MASTER_MORAY_PORT: '2020' }],
    ];
    for (const [what, master] of variants) {
        const { raw } = zoneConfig({ get: (k) => md[k], zonename: '6a1f7f6e-5a0e-4c8e-9c43-2d0e8b1b6f1c', dataDir: '/sapi' });
        rmSync(masterPath, { force: true });
        if (master) {
            writeFileSync(masterPath, render(template, master));
        }
        mergeMasterConfig(raw, masterPath);
        const c = parseConfig(raw);
        t.equal(c.moray?.srvDomain, 'moray.us-east-1.example.com', `${what}: the local moray`);
        if (master?.MASTER_MORAY_IP) {
            t.equal(c.moray?.master_host, '10.1.0.9', `${what}: master_host`);
            t.equal(c.moray?.master_port, 2020, `${what}: master_port, a number`);
        } else if (master) {
            t.equal(c.moray?.master_host, null, `${what}: master_host null`);
        } else {
            t.equal(c.moray?.master_host, undefined, `${what}: master_host unset`);
        }
    }
});
