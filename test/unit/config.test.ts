// Configuration: defaults, the minimal complete file, fail-fast errors
// naming the key, config-agent's string values, the multi-DC master file.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { ConfigError, loadConfig, parseConfig } from '../../lib/config.js';

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
    t.throws(() => parseConfig({ port: 'eighty' }), { name: 'ConfigError', message: /\/port must be integer/ });
    t.throws(() => parseConfig({ store: { backend: 'postgres' } }), /\/store\/backend must be equal to one of the allowed values/);
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
