// sapiadm check server-agents: a crafted mismatch between SAPI's agent
// instances and CNAPI server.agents is reported (exit 3); --fix asks first
// on a terminal (and refuses without --yes elsewhere), --fix --yes refreshes server.agents and makes the records match (then the
// check is clean); a CNAPI without refresh-agents is reported as stale.
// On SAPI 2.1.2's data it reports unplaced agent instances (no
// params.server_uuid) and duplicate instances of one agent on one server,
// and --fix places the first and keeps only the reported one of the second.
// --fix refreshes --concurrency servers at a time with progress on stderr;
// a refresh that does not end within --timeout is named and left behind.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import type { CnapiAgent } from '../../lib/clients/cnapi.js';
import { agentWorld } from '../lib/agent-world.js';
import { startFakeCnapi } from '../lib/fake-cnapi.js';
import { aService } from '../lib/fixtures.js';
import { startSapi } from '../lib/harness.js';
import { duplicatePairs, storeAs212, type DumpInstance } from '../lib/sapi-212-dump.js';
import { exits, sapiadm, sapiadmAtTerminal } from '../lib/sapiadm.js';

t.test('drift report, --fix --yes, clean afterwards', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent', 'cn-agent', 'config-agent'], refreshAgents: true });
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
        sapiadm(['check', 'server-agents', '--fix'], { ...opts, stdin: 'y\n' }),
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

    // stdin a pipe, not a terminal: no one to ask, so no answer is read from it.
    exits(t, declined, 2, '--fix without --yes off a terminal');
    t.match(declined.stderr, /^sapiadm: refusing to refresh server\.agents and change 5 SAPI records without --yes \(not a terminal\)$/m);
    t.notMatch(declined.stderr, '[y/N]', 'nothing asked');
    t.same(await instances(), before, 'SAPI untouched');
    const no = await sapiadmAtTerminal(['check', 'server-agents', '--fix'], { url: w.h.url, env, answer: 'n' });
    t.ok(no.asked, 'asked on a terminal');
    t.equal(no.code, 3, 'not answered y: the drift remains');
    t.match(no.stderr, /Refresh server\.agents and change 5 SAPI records as listed\? \[y\/N\] Nothing changed\./, 'a "n" changes nothing');
    t.same(await instances(), before, 'SAPI untouched');
    t.equal(w.cnapi.state.taskLog.length, 0, 'no CNAPI task either');

    const fixed = await sapiadm(['check', 'server-agents', '--fix', '--yes'], opts);
    exits(t, fixed, 0);
    t.match(fixed.stdout, `refreshed server.agents of ${A}`);
    // Five record changes; then config-agent, whose record was forgotten
    // (the server lacks it), is missing there: one plan installs it.
    t.match(fixed.stdout, new RegExp(`installing 1 missing agent with rollout [0-9a-f-]{36}`));
    t.match(fixed.stdout, `done: installed config-agent on server ${A}`);
    t.match(fixed.stdout, /Fixed: 6 changes; SAPI and CNAPI agree now\./);
    t.same(
        w.cnapi.state.taskLog.map((x) => x.task),
        ['refresh_agents', 'agent_install'],
        'one refresh, and one install (the missing agent); nothing uninstalled',
    );
    const after = await instances();
    t.same(
        after
            .filter((i) => i.service_uuid !== CFG.uuid)
            .map((i) => [i.uuid, i.service_uuid, (i.params as Record<string, string>).server_uuid, (i.params as Record<string, string>).image_uuid])
            .sort(),
        [
            [cnUuid, CN.uuid, A, CN.image],
            [vmUuid, VM.uuid, A, VM.image],
        ].sort(),
        "SAPI now records exactly what server A runs (the refreshed vm-agent image, the node's uuids)",
    );
    t.same(
        after
            .filter((i) => i.service_uuid === CFG.uuid)
            .map((i) => [(i.params as Record<string, string>).server_uuid, (i.params as Record<string, string>).image_uuid]),
        [[A, CFG.image]],
        'and the config-agent the plan installed there, at its service image',
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

t.test('SAPI 2.1.2 data: unplaced agent instances and duplicates, reported and fixed', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const cnapi = await startFakeCnapi({ taskDurationMs: 5 });
    t.teardown(() => cnapi.close());

    const { svcs, nameOf, svcImage, agentsOn, unplaced, placedAt } = await storeAs212(h.store);
    for (const [uuid, agents] of agentsOn) cnapi.addServer({ uuid, agents });
    // One more agent instance without params that no server runs.
    const stray = { uuid: randomUUID(), service_uuid: (unplaced[0] as DumpInstance).service_uuid, type: 'agent' };
    await h.store.put('sapi_instances', stray);

    const pairs = duplicatePairs();
    t.equal(pairs.length, 5, 'the dump has 5 servers with two instances of one agent');
    const keepOf = (server: string, service: string): string => ((agentsOn.get(server) ?? []).find((a) => a.name === service) as CnapiAgent).uuid as string;
    const wantDuplicates = pairs
        .map((p) => {
            const service = (svcs.get(p.service_uuid) as { name: string }).name;
            return { server_uuid: p.server_uuid, service, instances: p.uuids, keep: keepOf(p.server_uuid, service) };
        })
        .sort((a, b) => a.server_uuid.localeCompare(b.server_uuid) || a.service.localeCompare(b.service));
    const wantUnplaced = [
        ...unplaced.map((i) => ({ instance: i.uuid, service: nameOf(i), server_uuid: placedAt.get(i.uuid) })),
        { instance: stray.uuid, service: nameOf(stray as DumpInstance) },
    ].sort((a, b) => a.instance.localeCompare(b.instance));

    const opts = { url: h.url, env: { CNAPI_URL: cnapi.url } };
    const [text, json] = await Promise.all([sapiadm(['check', 'server-agents'], opts), sapiadm(['--json', 'check', 'server-agents'], opts)]);
    exits(t, text, 3);
    exits(t, json, 3);

    type Report = {
        unplaced: { instance: string; service: string; server_uuid?: string }[];
        duplicates: { server_uuid: string; service: string; instances: string[]; keep?: string }[];
        general: { kind: string; instance?: string }[];
        servers: { uuid: string; findings: { kind: string; instance?: string; fix?: { op: string } }[] }[];
    };
    const sortReport = (r: Report): Pick<Report, 'unplaced' | 'duplicates'> => ({
        unplaced: [...r.unplaced].sort((a, b) => a.instance.localeCompare(b.instance)),
        duplicates: r.duplicates
            .map((d) => ({ ...d, instances: [...d.instances].sort() }))
            .sort((a, b) => a.server_uuid.localeCompare(b.server_uuid) || a.service.localeCompare(b.service)),
    });
    const report = json.json.report as Report;
    t.same(sortReport(report), { unplaced: wantUnplaced, duplicates: wantDuplicates }, '--json lists every unplaced instance and duplicate');
    const findings = report.servers.flatMap((s) => s.findings.map((f) => ({ ...f, server: s.uuid })));
    t.equal(findings.filter((f) => f.kind === 'unplaced').length, 47, 'an unplaced instance a server runs is a finding of that server');
    t.ok(
        findings.filter((f) => f.kind === 'unplaced').every((f) => f.fix?.op === 'adopt' && placedAt.get(f.instance as string) === f.server),
        '… fixed by recording it there',
    );
    t.same(
        report.general.filter((f) => f.kind === 'unplaced').map((f) => f.instance),
        [stray.uuid],
        'one no server runs is a general finding',
    );
    t.equal(findings.filter((f) => f.kind === 'duplicate' && f.fix?.op === 'forget-duplicates').length, 5, 'duplicates: one finding per server and agent');

    const agent = unplaced[0] as DumpInstance;
    t.match(text.stdout, /^ {2}unplaced +/m, 'labelled unplaced');
    t.match(
        text.stdout,
        `${nameOf(agent)} instance ${agent.uuid} has no params.server_uuid (SAPI 2.1.2 data); this server's server.agents has it, so \`sapiadm migrate\` (or --fix) records it here`,
    );
    t.match(text.stdout, 'fix: sapiadm migrate --cnapi-url URL');
    t.match(
        text.stdout,
        `${nameOf(stray as DumpInstance)} instance ${stray.uuid} has no params.server_uuid (SAPI 2.1.2 data), and no server.agents entry has its uuid`,
    );
    const dup = wantDuplicates[0] as { server_uuid: string; service: string; instances: string[]; keep: string };
    const other = dup.instances.find((u) => u !== dup.keep) as string;
    t.match(text.stdout, /^ {2}duplicates +/m, 'labelled duplicates');
    const dupLine = text.stdout.split('\n').find((l) => l.includes(`SAPI records 2 ${dup.service} instances on this server (`) && l.includes(other)) ?? '';
    t.ok(dupLine.includes(dup.keep), 'the duplicates line names both instances', { stdout: text.stdout });
    t.match(
        dupLine,
        `left by SAPI 2.1.2; the agent's next adoption replaces them with its own instance. server.agents reports ${dup.keep}: --fix keeps it and forgets the others`,
    );
    t.match(text.stdout, `fix: sapiadm instances delete ${other} --record-only`);
    t.match(
        text.stdout,
        "unplaced: 48 agent instances without params.server_uuid (47 found in a server's server.agents); `sapiadm migrate --cnapi-url URL` fills params.server_uuid from CNAPI server.agents",
    );
    t.match(text.stdout, "duplicates: 5 extra agent instances in 5 groups of one agent on one server; each agent's next adoption replaces them");

    const fixed = await sapiadm(['check', 'server-agents', '--fix', '--yes'], opts);
    t.match(
        fixed.stdout,
        `done: forgot duplicate ${dup.service} instance ${other} on server ${dup.server_uuid}; kept ${dup.keep}, the one server.agents reports`,
    );
    t.match(fixed.stdout, `done: recorded ${nameOf(agent)} instance ${agent.uuid} on server ${placedAt.get(agent.uuid) as string}`);
    t.notMatch(fixed.stdout, 'FAILED');
    t.equal((await h.call('GET', `/instances/${other}`)).status, 404, 'the duplicate is forgotten');
    t.equal((await h.call('GET', `/instances/${dup.keep}`)).status, 200, 'the reported one is kept');
    const placed = await h.call('GET', `/instances/${agent.uuid}`, { version: '~2' });
    t.same(
        placed.body.params,
        { server_uuid: placedAt.get(agent.uuid), image_uuid: svcImage(agent) },
        'the unplaced instance got its server (and image) from server.agents',
    );

    const after = await sapiadm(['--json', 'check', 'server-agents'], opts);
    const afterReport = after.json.report as Report;
    t.same(afterReport.duplicates, [], 'no duplicates left');
    t.same(afterReport.unplaced, [{ instance: stray.uuid, service: nameOf(stray as DumpInstance) }], 'only the stray instance is unplaced');
});

t.test('--fix on many servers: a bounded number of refreshes at once, progress on stderr, a stuck refresh named and left behind', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], refreshAgents: true });
    t.teardown(w.close);
    const VM = w.svc['vm-agent'] as { uuid: string; image: string };
    // Six servers running vm-agent that SAPI has no record of (fixable: recorded from server.agents).
    const servers = Array.from(
        { length: 6 },
        () => w.cnapi.addServer({ agents: [{ name: 'vm-agent', version: '1.0.1', image_uuid: VM.image, uuid: randomUUID() }] }).uuid,
    );
    const STUCK = servers[3] as string;
    w.cnapi.planTaskOn(STUCK, 'hang'); // its refresh task never ends
    w.cnapi.clearRequests();
    const opts = { url: w.h.url, env: { CNAPI_URL: w.cnapi.url } };

    const r = await sapiadm(['--json', 'check', 'server-agents', '--fix', '--yes', '--concurrency', '2', '--timeout', '5'], opts);
    exits(t, r, 0, 'every record fixed, the stuck server from server.agents as it was');
    t.ok(r.json, '--json: stdout is the one JSON document', { stdout: r.stdout });
    t.equal(r.json.after.drift, 0);
    t.equal((r.json.actions as { ok: boolean }[]).filter((a) => a.ok).length, 6, 'all six servers recorded');
    t.match(r.stderr, `warning: could not refresh server.agents of ${STUCK}: timed out after 5s (--timeout); it may be stale`, 'the stuck server is named');
    for (const s of servers.filter((s) => s !== STUCK)) {
        t.match(r.stderr, `refreshed server.agents of ${s}`);
    }
    const progress = r.stderr.split('\n').filter((l) => l.startsWith('server.agents refresh: '));
    t.same(
        progress.map((l) => /: (\d+)\/6 servers done/.exec(l)?.[1]),
        ['2', '4', '6'],
        'a progress line every --concurrency servers and at the end',
        { stderr: r.stderr },
    );
    t.equal(progress.at(-1), 'server.agents refresh: 6/6 servers done, 1 failed');

    // In flight per server: from its POST refresh-agents to its last poll of the task.
    const taskServer = new Map(w.cnapi.state.taskLog.map((e) => [e.id, e.server_uuid]));
    const reqs = w.cnapi.requests.map((q) => ({
        post: q.routeKey === 'POST /servers/:uuid/refresh-agents' ? (q.path.split('/')[2] as string) : undefined,
        poll: q.routeKey === 'GET /tasks/:id' ? taskServer.get(q.path.split('/')[2] as string) : undefined,
    }));
    const lastPoll = new Map<string, number>();
    reqs.forEach((q, i) => q.poll && lastPoll.set(q.poll, i));
    let most = 0;
    reqs.forEach((q, i) => {
        if (!q.post) return;
        const open = [...lastPoll.entries()].filter(([s, last]) => last > i && reqs.findIndex((x) => x.post === s) <= i).length;
        most = Math.max(most, open);
    });
    t.equal(reqs.filter((q) => q.post).length, 6, 'one refresh per server');
    t.ok(most >= 1 && most <= 2, `at most --concurrency 2 refreshes in flight (saw ${most})`);

    t.test('a refresh request CNAPI never answers: named, and the command goes on (text mode)', async (t) => {
        const A = servers[0] as string;
        // Drift again on A: its record forgotten (v1: the record only).
        const onA = await w.h.call('GET', `/instances?service_uuid=${VM.uuid}`, { version: '~2' });
        for (const i of onA.body as { uuid: string; params: { server_uuid: string } }[]) {
            if (i.params.server_uuid === A) t.equal((await w.h.call('DELETE', `/instances/${i.uuid}`)).status, 204);
        }
        w.cnapi.hang('POST /servers/:uuid/refresh-agents');
        t.teardown(() => w.cnapi.unhang());
        const text = await sapiadm(['check', 'server-agents', A, '--fix', '--yes', '--timeout', '1'], opts);
        exits(t, text, 0);
        t.match(text.stdout, `warning: could not refresh server.agents of ${A}: timed out after 1s (--timeout); it may be stale`);
        t.match(text.stdout, `recorded vm-agent instance`);
        t.notMatch(text.stdout, 'server.agents refresh:', 'progress is not in stdout');
        t.match(text.stderr, /^server\.agents refresh: 1\/1 server done, 1 failed$/m);
    });
});
