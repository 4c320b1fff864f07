// Setting up a server's agents from the CLI, against the fake CNAPI and
// IMGAPI: `check server-agents` reports the agents a server lacks as
// "missing", with the command that installs them; `server setup-agents
// --dry-run` prints the plan (installs, the adoption of what SAPI does not
// record) and starts nothing; `server setup-agents` runs it and the server
// is clean afterwards; a re-run installs nothing.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';
import { exits, sapiadm } from '../lib/sapiadm.js';

t.test('a new server: missing agents reported, previewed, installed, then clean', async (t) => {
    const w = await agentWorld({ agents: ['cn-agent', 'config-agent', 'vm-agent'], taskDurationMs: 10 });
    t.teardown(w.close);
    const cnAgent = randomUUID();
    // A freshly set-up server: cn-agent only (at its service image), unknown to SAPI.
    const S = w.cnapi.addServer({ agents: [{ name: 'cn-agent', version: '2.13.0', image_uuid: w.svc['cn-agent']?.image as string, uuid: cnAgent }] }).uuid;
    const opts = { url: w.h.url, env: { CNAPI_URL: w.cnapi.url } };

    const before = await sapiadm(['check', 'server-agents', S], opts);
    exits(t, before, 3, 'drift: agents missing');
    t.match(before.stdout, /missing\s+config-agent is not installed here \(not in server\.agents\) and SAPI has no instance of it/);
    t.match(before.stdout, /missing\s+vm-agent is not installed here/);
    t.match(before.stdout, `fix: sapiadm server setup-agents ${S}`);
    t.match(before.stdout, /missing in SAPI\s+cn-agent 2\.13\.0 is installed/, 'cn-agent is there, only unrecorded');

    const plan = await sapiadm(['server', 'setup-agents', S, '--dry-run'], opts);
    exits(t, plan, 0, 'a preview');
    t.match(plan.stdout, /plan \(dry run, nothing started\)/);
    t.match(plan.stdout, /install\s+config-agent/);
    t.match(plan.stdout, /install\s+vm-agent/);
    t.match(plan.stdout, /adopt\s+cn-agent/);
    t.ok(plan.stdout.indexOf('config-agent') < plan.stdout.indexOf('vm-agent'), 'config-agent first');
    t.equal(w.cnapi.state.taskLog.length, 0, 'nothing started');

    const run = await sapiadm(['server', 'setup-agents', S, '--interval', '50'], opts);
    exits(t, run, 0, 'set up');
    t.same(
        w.cnapi.state.taskLog.map((x) => x.task),
        ['agent_install', 'agent_install'],
        'two installs; cn-agent adopted without a task',
    );
    const recorded = (await w.h.call('GET', `/instances?server_uuid=${S}`, { version: '~2' })).body as { service_uuid: string; uuid: string }[];
    t.same(recorded.map((i) => i.service_uuid).sort(), ['cn-agent', 'config-agent', 'vm-agent'].map((n) => w.svc[n]?.uuid).sort());
    t.ok(
        recorded.some((i) => i.uuid === cnAgent),
        "cn-agent recorded under the agent's own uuid",
    );

    const after = await sapiadm(['check', 'server-agents', S], opts);
    exits(t, after, 0, 'clean afterwards');
    t.match(after.stdout, /^OK: 1 server checked/m);

    const again = await sapiadm(['server', 'setup-agents', S, '--interval', '50'], opts);
    exits(t, again, 0, 'a re-run: nothing needed');
    t.match(again.stdout, /nothing needed upgrading/);
    t.equal(w.cnapi.state.taskLog.length, 2, 'no new task');

    const bad = await sapiadm(['server', 'setup-agents', 'not-a-uuid'], opts);
    exits(t, bad, 2, 'usage error');
});
