// sapiadm rollout: start and watch to the end (progress lines when not a
// TTY, the summary, exit 0), a rollout with a stalled instance that then
// fails (the stall warning as it appears, then the failure, exit 1), and
// rollout status. The stalled task is held until the stall has been seen,
// so the order does not depend on the machine's speed.

import t from 'tap';

import { agentWorld, vmAgentServers } from '../lib/agent-world.js';
import { exits, sapiadm } from '../lib/sapiadm.js';

t.test('rollout watch', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 40 });
    t.teardown(w.close);
    const servers = await vmAgentServers(w, 4);
    const opts = { url: w.h.url };

    const img1 = w.newImage('vm-agent', '1.1.0');
    const three = servers.slice(0, 3);
    const ok = await sapiadm(['rollout', 'vm-agent', img1, '--servers', three.join(','), '--concurrency', '2', '--interval', '50'], opts);
    exits(t, ok, 0, 'every instance succeeded');
    const lines = ok.stdout.trimEnd().split('\n');
    t.match(lines[0], new RegExp(`^rollout [0-9a-f-]{36}: 3 vm-agent instance\\(s\\) to image ${img1}, concurrency 2$`));
    const progress = lines.filter((l) => l.startsWith('['));
    t.ok(progress.length >= 2, 'plain progress lines, not redrawn (stdout is not a TTY)');
    t.notMatch(ok.stdout, '\r', 'no carriage returns');
    t.match(progress[progress.length - 1], /^\[#{24}\] 3\/3 {2}pending 0 {2}running 0 {2}succeeded 3 {2}failed 0 {2}stalled 0 {2}avg \d+ms/);
    t.match(ok.stdout, /Rollout [0-9a-f-]{36} succeeded: vm-agent to image /);
    t.match(ok.stdout, /3 instances: 3 succeeded, 0 failed; average \d+ms; took /);
    const onImg1 = await w.h.call('GET', `/instances?image_uuid=${img1}`, { version: '~2' });
    t.equal(onImg1.body.length, 3, 'only the servers asked for');

    // The last server hangs: it stalls past 1.5x the average, then its task fails.
    const img2 = w.newImage('vm-agent', '1.2.0');
    w.cnapi.planTaskOn(servers[3] as string, 'hang');
    const watching = sapiadm(
        ['rollout', 'vm-agent', img2, '--concurrency', '4', '--stall-factor', '1.5', '--instance-timeout', '600', '--interval', '50'],
        opts,
    );
    for (;;) {
        const list = await w.h.call('GET', '/rollouts', { version: '~2' });
        const running = (list.body as { image_uuid: string; warnings: string[] }[]).find((r) => r.image_uuid === img2);
        if (running?.warnings.some((m) => /over 1\.5x the average/.test(m))) break;
        await new Promise((res) => setTimeout(res, 20));
    }
    w.cnapi.releaseHungTasks({ fail: 'AgentInstall error: Unexpected file size (1 vs 2)' });
    const bad = await watching;
    exits(t, bad, 1, 'an instance failed');
    const warn = bad.stdout.indexOf('warning: instance');
    const failed = bad.stdout.indexOf(`failed: instance`);
    const summary = bad.stdout.indexOf('Rollout ');
    t.ok(warn > 0 && warn < failed && failed < summary, 'the stall warning, then the failure, then the summary');
    t.match(bad.stdout, /warning: instance [0-9a-f-]{36} on server [0-9a-f-]{36} has run [\d.]+s, over 1\.5x the average/);
    t.match(bad.stdout, /Rollout ([0-9a-f-]{36}) failed: vm-agent to image/);
    t.match(bad.stdout, /4 instances: 3 succeeded, 1 failed; average \d+ms/);
    t.match(bad.stdout, new RegExp(`\nfailed: instance [0-9a-f-]{36} on server ${servers[3]}: [^\n]*Unexpected file size \\(1 vs 2\\)`));

    const id = /Rollout ([0-9a-f-]{36}) failed/.exec(bad.stdout)?.[1] as string;
    const status = await sapiadm(['--json', 'rollout', 'status', id], opts);
    exits(t, status, 1, 'a failed rollout');
    t.equal(status.json.uuid, id);
    t.equal(status.json.state, 'failed');
    t.equal(status.json.instance_timeout_ms, 600_000, '--instance-timeout in seconds');
    t.same(status.json.counts, { pending: 0, running: 0, succeeded: 3, failed: 1, stalled: 0, canceled: 0 });
});
