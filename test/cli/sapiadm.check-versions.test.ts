// sapiadm check server-agents compares versions, not image uuids: an agent
// newer than the image its service names (by server.agents' version against
// IMGAPI's, a build stamp ordering builds of one version) is reported
// "newer", never "outdated", with the commands to keep it or go back on
// purpose; an older one is "outdated" with the rollout command; --fix --yes
// installs and downgrades nothing. Without IMGAPI, the versions
// server.agents reports for the service's image decide.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';
import { exits, sapiadm } from '../lib/sapiadm.js';

t.test('newer agents are reported as newer and left alone', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent', 'cn-agent'] });
    t.teardown(w.close);
    const VM = w.svc['vm-agent'] as { uuid: string; image: string };
    const CN = w.svc['cn-agent'] as { uuid: string; image: string };
    // The services name vm-agent 1.1.0 and a cn-agent 2.13.0 build of June.
    const vmTarget = w.newImage('vm-agent', '1.1.0');
    const cnTarget = w.newImage('cn-agent', '2.13.0-20230601T000000Z');
    for (const [svc, image] of [
        [VM.uuid, vmTarget],
        [CN.uuid, cnTarget],
    ] as const) {
        const r = await w.h.call('PUT', `/services/${svc}`, { body: { params: { image_uuid: image } }, version: '~2' });
        t.equal(r.status, 200, r.text);
    }
    const vmNewer = w.newImage('vm-agent', '1.2.0');
    const vmOlder = w.newImage('vm-agent', '1.0.5');
    const cnJuly = w.newImage('cn-agent', '2.13.0-20230701T000000Z');
    const cnMay = w.newImage('cn-agent', '2.13.0-20230501T000000Z');

    /** A server whose agents SAPI records as server.agents reports them. */
    const server = async (agents: { name: string; image: string; version?: string }[]): Promise<string> => {
        const entries = agents.map((a) => ({ name: a.name, image_uuid: a.image, uuid: randomUUID(), ...(a.version ? { version: a.version } : {}) }));
        const s = w.cnapi.addServer({ agents: entries }).uuid;
        for (const e of entries) {
            const svc = (w.svc[e.name] as { uuid: string }).uuid;
            const r = await w.h.call('POST', '/instances', { body: { service_uuid: svc, uuid: e.uuid, params: { server_uuid: s, image_uuid: e.image_uuid } } });
            t.equal(r.status, 200, r.text);
        }
        return s;
    };
    const NEWER = await server([
        { name: 'vm-agent', image: vmNewer, version: '1.2.0' },
        { name: 'cn-agent', image: cnJuly, version: '2.13.0-20230701T000000Z' },
    ]);
    // No version in server.agents: IMGAPI's version of the image it runs.
    const NEWER_BY_IMAGE = await server([{ name: 'vm-agent', image: vmNewer }]);
    const OLDER = await server([
        { name: 'vm-agent', image: vmOlder, version: '1.0.5' },
        { name: 'cn-agent', image: cnMay, version: '2.13.0-20230501T000000Z' },
    ]);
    const env = { CNAPI_URL: w.cnapi.url, IMGAPI_URL: w.imgapi.url };
    const opts = { url: w.h.url, env };

    const [text, json] = await Promise.all([sapiadm(['check', 'server-agents'], opts), sapiadm(['--json', 'check', 'server-agents'], opts)]);
    exits(t, text, 3, 'drift');
    exits(t, json, 3);
    type Report = { servers: { uuid: string; findings: { kind: string; service: string; fix?: unknown }[] }[] };
    const kinds = Object.fromEntries((json.json.report as Report).servers.map((s) => [s.uuid, s.findings.map((f) => `${f.service} ${f.kind}`).sort()]));
    t.same(
        kinds,
        {
            [NEWER]: ['cn-agent newer', 'vm-agent newer'],
            [NEWER_BY_IMAGE]: ['vm-agent newer'],
            [OLDER]: ['cn-agent outdated', 'vm-agent outdated'],
        },
        'newer by version (and by build stamp) is newer, never outdated; older is outdated',
    );
    t.ok(
        (json.json.report as Report).servers.every((s) => s.findings.every((f) => f.fix === undefined)),
        'no --fix action for either: a rollout decides',
    );
    t.match(
        text.stdout,
        `vm-agent runs 1.2.0 (image ${vmNewer}), newer than the 1.1.0 (image ${vmTarget}) the service names; a rollout skips it (it never downgrades unless asked)`,
    );
    t.match(text.stdout, /^ {2}newer +cn-agent runs 2\.13\.0-20230701T000000Z /m);
    t.match(text.stdout, `fix: sapiadm services update vm-agent -p image_uuid=${vmNewer}`);
    t.match(text.stdout, `or go back: sapiadm rollout vm-agent ${vmTarget} --servers ${NEWER} --allow-downgrade`);
    t.match(text.stdout, `vm-agent runs 1.0.5 (image ${vmOlder}); the service wants 1.1.0 (image ${vmTarget})`);
    t.match(text.stdout, `sapiadm rollout vm-agent ${vmTarget} --servers ${OLDER}`);
    t.notMatch(text.stdout, `sapiadm rollout vm-agent ${vmTarget} --servers ${NEWER}\n`, 'no plain rollout proposed for a newer agent');

    const tasks = w.cnapi.state.taskLog.length;
    const fixed = await sapiadm(['check', 'server-agents', '--fix', '--yes'], opts);
    exits(t, fixed, 3, 'the newer and outdated agents remain');
    t.match(fixed.stdout, 'Nothing here that --fix can change');
    t.equal(w.cnapi.state.taskLog.length, tasks, 'nothing installed, nothing downgraded');
    t.equal(w.cnapi.agentsOf(NEWER).find((a) => a.name === 'vm-agent')?.version, '1.2.0');
    const svc = await w.h.call('GET', `/services/${VM.uuid}`);
    t.equal(svc.body.params.image_uuid, vmTarget, "the service's image unchanged");

    t.test("without IMGAPI: the version server.agents reports for the service's image", async (t) => {
        await server([{ name: 'vm-agent', image: vmTarget, version: '1.1.0' }]);
        const r = await sapiadm(['--json', 'check', 'server-agents'], { url: w.h.url, env: { CNAPI_URL: w.cnapi.url } });
        exits(t, r, 3);
        const found = (r.json.report as Report).servers
            .filter((s) => s.uuid === NEWER)
            .flatMap((s) => s.findings.map((f) => `${f.service} ${f.kind}`))
            .sort();
        t.same(found, ['cn-agent outdated', 'vm-agent newer'], 'vm-agent: 1.2.0 against the 1.1.0 a server reports; cn-agent: no version known, so by image');
        const text = await sapiadm(['check', 'server-agents'], { url: w.h.url, env: { CNAPI_URL: w.cnapi.url } });
        t.match(
            text.stdout,
            `cn-agent runs 2.13.0-20230701T000000Z (image ${cnJuly}); the service wants image ${cnTarget} (a version unknown: told apart by image uuid only; IMGAPI, --imgapi-url, gives the versions)`,
            'said so when a version is unknown',
        );
    });
});
