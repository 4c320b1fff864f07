// sapiadm check server-agents: a crafted mismatch between SAPI's agent
// instances and CNAPI server.agents is reported (exit 3); --fix asks first,
// --fix --yes refreshes server.agents and makes the records match (then the
// check is clean); a CNAPI without refresh-agents is reported as stale.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';
import { aService } from '../lib/fixtures.js';
import { exits, sapiadm } from '../lib/sapiadm.js';

t.test('drift report, --fix --yes, clean afterwards', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent', 'cn-agent', 'config-agent'] });
    t.teardown(w.close);
    const svc = (name: string): { uuid: string; image: string } => w.svc[name] as { uuid: string; image: string };
    const CN = svc('cn-agent');
    const VM = svc('vm-agent');
    const CFG = svc('config-agent');
    const VM_OLD = w.newImage('vm-agent', '0.9.0');
    const cnUuid = randomUUID();
    const vmUuid = randomUUID();
    const cfgUuid = randomUUID();

    // Server A: CNAPI's cache still shows an old vm-agent; the CN really runs the service's image.
    const A = w.cnapi.addServer({
        agents: [
            { name: 'cn-agent', version: '2.13.0', image_uuid: CN.image, uuid: cnUuid },
            { name: 'vm-agent', version: '0.9.0', image_uuid: VM_OLD, uuid: vmUuid },
        ],
    }).uuid;
    w.cnapi.setNodeAgents(A, [
        { name: 'cn-agent', version: '2.13.0', image_uuid: CN.image, uuid: cnUuid },
        { name: 'vm-agent', version: '1.0.1', image_uuid: VM.image, uuid: vmUuid },
    ]);
    // A server CNAPI reports as not set up (factory reset), and one it does not know at all.
    const RESET = w.cnapi.addServer({ setup: false, status: 'unknown', agents: [] }).uuid;
    const GONE = randomUUID();

    // SAPI's records, written as agents adopt themselves (v1, record only).
    const record = async (service: string, uuid: string, server: string, image: string): Promise<void> => {
        const r = await w.h.call('POST', '/instances', { body: { service_uuid: service, uuid, params: { server_uuid: server, image_uuid: image } } });
        t.equal(r.status, 200, 'recorded', { body: r.text });
    };
    const OTHER_IMAGE = w.newImage('cn-agent', '2.12.0');
    await record(CN.uuid, cnUuid, A, OTHER_IMAGE); // image mismatch
    await record(CFG.uuid, cfgUuid, A, CFG.image); // missing on server
    const resetInst = randomUUID();
    await record(VM.uuid, resetInst, RESET, VM.image); // server not set up
    const goneInst = randomUUID();
    await record(CN.uuid, goneInst, GONE, CN.image); // server gone
    // vm-agent on A: installed, no record (missing in SAPI), and outdated per the stale cache.

    const env = { CNAPI_URL: w.cnapi.url };
    const opts = { url: w.h.url, env };
    const instances = async (): Promise<Record<string, unknown>[]> =>
        (await w.h.call('GET', '/instances?type=agent', { version: '~2' })).body as Record<string, unknown>[];
    const before = await instances();

    const [text, json, declined] = await Promise.all([
        sapiadm(['check', 'server-agents'], opts),
        sapiadm(['--json', 'check', 'server-agents'], opts),
        sapiadm(['check', 'server-agents', '--fix'], { ...opts, stdin: 'n\n' }),
    ]);

    exits(t, text, 3);
    for (const label of ['missing in SAPI', 'missing on server', 'image mismatch', 'outdated', 'server gone', 'server not setup']) {
        t.match(text.stdout, label, `reports: ${label}`);
    }
    t.match(text.stdout, `sapiadm instances create --record-only --service vm-agent --server ${A} --uuid ${vmUuid} --image ${VM_OLD}`);
    t.match(text.stdout, `sapiadm instances delete ${cfgUuid} --record-only`);
    t.match(text.stdout, `sapiadm instances update ${cnUuid} -p image_uuid=${CN.image}`);
    t.match(text.stdout, `sapiadm instances forget-server ${GONE}`);
    t.match(text.stdout, `sapiadm instances forget-server ${RESET}`);
    t.match(text.stdout, `sapiadm rollout vm-agent ${VM.image} --servers ${A}`);
    t.match(text.stdout, /6 issues on 3 servers \(0 of 3 servers clean, 5 fixable with --fix\)\./);

    exits(t, json, 3);
    const byServer = Object.fromEntries(
        (json.json.report.servers as { uuid: string; state: string; findings: { kind: string }[] }[]).map((s) => [
            s.uuid,
            { state: s.state, kinds: s.findings.map((f) => f.kind).sort() },
        ]),
    );
    t.same(byServer, {
        [A]: { state: 'setup', kinds: ['image-mismatch', 'missing-in-sapi', 'missing-on-server', 'outdated'] },
        [RESET]: { state: 'not-setup', kinds: ['server-not-setup'] },
        [GONE]: { state: 'gone', kinds: ['server-gone'] },
    });

    exits(t, declined, 3);
    t.match(declined.stderr, /\[y\/N\] Nothing changed\./, 'asks, and a "n" changes nothing');
    t.same(await instances(), before, 'SAPI untouched');
    t.equal(w.cnapi.state.taskLog.length, 0, 'no CNAPI task either');

    const fixed = await sapiadm(['check', 'server-agents', '--fix', '--yes'], opts);
    exits(t, fixed, 0);
    t.match(fixed.stdout, `refreshed server.agents of ${A}`);
    t.match(fixed.stdout, /Fixed: 5 changes; SAPI and CNAPI agree now\./);
    t.same(
        w.cnapi.state.taskLog.map((x) => x.task),
        ['refresh_agents'],
        'one refresh, and nothing installed or uninstalled (record-only calls)',
    );
    const after = await instances();
    t.same(
        after.map((i) => [i.uuid, i.service_uuid, (i.params as Record<string, string>).server_uuid, (i.params as Record<string, string>).image_uuid]).sort(),
        [
            [cnUuid, CN.uuid, A, CN.image],
            [vmUuid, VM.uuid, A, VM.image],
        ].sort(),
        "SAPI now records exactly what server A runs (the refreshed vm-agent image, the node's uuids)",
    );

    const clean = await sapiadm(['check', 'server-agents'], opts);
    exits(t, clean, 0);
    t.match(clean.stdout, /^OK: 1 server checked/m);

    t.test('CNAPI without refresh-agents: stale warning, fixed from server.agents as is', async (t) => {
        w.cnapi.refreshAgentsEnabled = false;
        const del = await w.h.call('DELETE', `/instances/${vmUuid}`);
        t.equal(del.status, 204);
        const cmon = await aService(w.h, w.app, { name: 'cmon-agent', type: 'agent' });
        const r = await sapiadm(['check', 'server-agents', A, '--fix', '--yes'], opts);
        exits(t, r, 3, 'drift remains (a service without an image)');
        t.match(r.stdout, 'server.agents may be stale');
        t.match(r.stdout, `recorded vm-agent instance ${vmUuid} on server ${A}`);
        t.match(r.stdout, `agent service cmon-agent (${cmon.uuid as string}) has no params.image_uuid`);
        t.match(r.stdout, 'sapiadm services update cmon-agent -p image_uuid=<IMAGE>');
        const got = await w.h.call('GET', `/instances/${vmUuid}`, { version: '~2' });
        t.equal(got.body.params.image_uuid, VM.image, 'the record came back');
    });
});
