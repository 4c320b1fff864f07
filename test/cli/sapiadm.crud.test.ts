// sapiadm over the real server: instance search by server (all pages),
// table and --json output, create/update inputs, API errors (exit 1) and
// usage errors (exit 2); destructive commands (instances delete,
// forget-server) ask on a terminal and refuse without --yes elsewhere.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { withIndexes } from '../../lib/model/instance-records.js';
import { anApplication, aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';
import { exits, sapiadm, sapiadmAtTerminal } from '../lib/sapiadm.js';

const SERVER_A = randomUUID();
const SERVER_B = randomUUID();
const IMAGE = randomUUID();

t.test('sapiadm against a SAPI with data', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const app = await anApplication(h);
    const svc = await aService(h, app.uuid, { name: 'manatee', params: { image_uuid: IMAGE } });
    const onA: string[] = [];
    for (const [server, alias] of [
        [SERVER_A, 'manatee0'],
        [SERVER_A, 'manatee1'],
        [SERVER_B, 'manatee2'],
    ] as const) {
        const r = await h.call('POST', '/instances', { body: { service_uuid: svc.uuid, params: { server_uuid: server, alias } } });
        t.equal(r.status, 200, 'recorded', { body: r.text });
        if (server === SERVER_A) onA.push(r.body.uuid as string);
    }
    // More than one page (1000) on a third server, written straight into the store.
    const SERVER_C = randomUUID();
    await h.store.batch(
        Array.from({ length: 1003 }, (_, i) => ({
            op: 'put' as const,
            bucket: 'sapi_instances' as const,
            value: withIndexes({ uuid: randomUUID(), service_uuid: svc.uuid, type: 'vm', params: { server_uuid: SERVER_C, alias: `bulk${i}` } }),
        })),
    );
    const opts = { url: h.url };

    t.test('search by server: a table, and --json through every page', async (t) => {
        const [tbl, json, paged] = await Promise.all([
            sapiadm(['instances', '--server', SERVER_A], opts),
            sapiadm(['--json', 'instances', '--server', SERVER_A, '--service', 'manatee', '--type', 'vm'], opts),
            sapiadm(['instances', '--server', SERVER_C, '--json'], opts),
        ]);
        exits(t, tbl, 0);
        const lines = tbl.stdout.trimEnd().split('\n');
        t.match(lines[0], /^UUID\s+SERVICE\s+TYPE\s+SERVER\s+IMAGE\s+ALIAS$/, 'a header');
        t.equal(lines.length, 3, 'two instances on server A');
        for (const uuid of onA) {
            t.match(tbl.stdout, new RegExp(`${uuid}\\s+manatee\\s+vm\\s+${SERVER_A}\\s+${IMAGE}\\s+manatee\\d`), 'one row per instance');
        }
        t.notMatch(tbl.stdout, /manatee2/, 'not the instance on server B');

        exits(t, json, 0);
        t.same(json.json.map((i: { uuid: string }) => i.uuid).sort(), [...onA].sort(), 'the same two, as JSON');
        t.ok(
            json.json.every((i: { type: string }) => i.type === 'vm'),
            'Accept-Version ~2: type is shown',
        );

        exits(t, paged, 0);
        t.equal(paged.json.length, 1003, 'every instance of a 1003-instance server');
        t.equal(new Set(paged.json.map((i: { uuid: string }) => i.uuid)).size, 1003, 'each once');
    });

    t.test('create and update with -p KEY=VALUE, KEY:=JSON and --metadata JSON', async (t) => {
        const created = await sapiadm(
            [
                'services',
                'create',
                'etcd',
                '--application',
                'sdc',
                '-p',
                `image_uuid=${IMAGE}`,
                '-p',
                'count:=3',
                '-p',
                'port=2379',
                '--metadata',
                '{"A":"b"}',
                '--json',
            ],
            opts,
        );
        exits(t, created, 0);
        t.same(created.json.params, { image_uuid: IMAGE, count: 3, port: '2379' }, 'strings stay strings, := gives JSON');
        t.same(created.json.metadata, { A: 'b' });
        t.equal(created.json.type, 'vm');

        const updated = await sapiadm(['services', 'update', 'etcd', '--action', 'delete', '-p', 'count'], opts);
        exits(t, updated, 0);
        t.equal(updated.stdout, `updated service ${created.json.uuid} (etcd)\n`, 'one line for people');
        const now = await h.call('GET', `/services/${created.json.uuid}`);
        t.same(now.body.params, { image_uuid: IMAGE, port: '2379' }, 'the key is gone');
    });

    t.test('API errors: exit 1 with the code and message of the server', async (t) => {
        const victim = onA[0] as string;
        const [del, down] = await Promise.all([
            sapiadm(['instances', 'delete', victim, '--yes'], opts),
            sapiadm(['-u', 'http://127.0.0.1:1', 'applications', 'list'], opts),
        ]);
        exits(t, del, 0);
        t.equal(del.stdout, `deleted instance ${victim}\n`);
        const gone = await sapiadm(['instances', 'get', victim], opts);
        exits(t, gone, 1);
        t.equal(gone.stdout, '');
        t.match(gone.stderr, `sapiadm: ResourceNotFound: no such instance: ${victim} (SAPI 404)`);
        exits(t, down, 1);
        t.match(down.stderr, /^sapiadm: SAPI unavailable: .*ECONNREFUSED/, 'an unreachable SAPI is named');
    });

    t.test('usage errors: exit 2 with a hint; --help documents the inputs', async (t) => {
        const [badUuid, unknown, nothing, missing, help] = await Promise.all([
            sapiadm(['instances', '--server', 'not-a-uuid'], opts),
            sapiadm(['frobnicate'], opts),
            sapiadm(['services', 'update', 'etcd'], opts),
            sapiadm(['instances', 'create', '-p', 'alias=x'], opts),
            sapiadm(['services', 'create', '--help'], opts),
        ]);
        exits(t, badUuid, 2);
        t.match(badUuid.stderr, '--server must be a UUID: not-a-uuid');
        exits(t, unknown, 2);
        t.match(unknown.stderr, /unknown command 'frobnicate'/);
        exits(t, nothing, 2);
        t.match(nothing.stderr, 'nothing to update');
        exits(t, missing, 2);
        t.match(missing.stderr, /required option '--service <SERVICE>' not specified/);
        exits(t, help, 0);
        t.match(help.stdout, 'KEY:=JSON');
        t.match(help.stdout, '--params <JSON>');
    });

    t.test('--help: a required option is marked; every exit status is listed', async (t) => {
        const [apps, root] = await Promise.all([sapiadm(['apps', 'create', '--help'], opts), sapiadm(['--help'], opts)]);
        exits(t, apps, 0);
        t.match(apps.stdout, /^Usage: sapiadm applications create --owner <UUID> \[options\] <NAME>$/m);
        t.match(apps.stdout, /^ {2}--owner <UUID> +required: owner_uuid/m);
        exits(t, root, 0);
        const block = root.stdout.slice(root.stdout.indexOf('Exit status:'));
        for (const code of ['0', '1', '2', '3', '4', '130']) {
            t.match(block, new RegExp(`^ {2}${code} +\\S`, 'm'), `exit ${code} is described`);
        }
        t.match(block, 'refusing to ... without --yes (not a terminal)', 'the refusal of a confirmation');
        t.match(block, 'nothing to roll out', 'a rollout that matched nothing');
    });

    t.test('instances delete and forget-server: refused without --yes off a terminal, asked on one', async (t) => {
        const victim = onA[1] as string;
        const still = async (uuid: string): Promise<number> => (await h.call('GET', `/instances/${uuid}`)).status;
        const [refused, forget, dry] = await Promise.all([
            sapiadm(['instances', 'delete', victim], opts),
            sapiadm(['instances', 'forget-server', SERVER_B], opts),
            sapiadm(['instances', 'forget-server', SERVER_B, '--dry-run'], opts),
        ]);
        exits(t, refused, 2, 'no --yes, stdin not a terminal');
        t.equal(refused.stderr, `sapiadm: refusing to delete instance ${victim} without --yes (not a terminal)\n`);
        exits(t, forget, 2);
        t.match(forget.stderr, `sapiadm: refusing to forget the agent instances of server ${SERVER_B} without --yes (not a terminal)`);
        exits(t, dry, 0, '--dry-run changes nothing: no question');
        t.equal(await still(victim), 200, 'not deleted');

        const no = await sapiadmAtTerminal(['instances', 'delete', victim], { url: h.url, answer: 'n' });
        t.ok(no.asked);
        t.match(no.stderr, `Delete manatee vm instance ${victim} on server ${SERVER_A} (in full mode this destroys the VM)? [y/N] `);
        t.equal(no.code, 2, 'not answered y');
        t.match(no.stderr, `Nothing changed: instance ${victim} not deleted.`);
        t.equal(await still(victim), 200, 'not deleted');

        const yes = await sapiadmAtTerminal(['instances', 'delete', victim], { url: h.url, answer: 'y' });
        t.equal(yes.code, 0);
        t.equal(yes.stdout, `deleted instance ${victim}\n`);
        t.equal(await still(victim), 404, 'deleted once answered y');
    });
});
