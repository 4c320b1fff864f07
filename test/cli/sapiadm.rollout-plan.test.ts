// sapiadm rollout plans against a full-mode SAPI and the fake CNAPI (one
// SAPI for the file): --all-agents --exclude --canary pauses after the
// canary server (exit 4, the promote command printed) and `rollout promote`
// finishes it (exit 0, per-agent summary; the excluded agent untouched);
// with --auto-promote-after the watch goes on to the end (exit 0);
// --service NAME=IMAGE --canary --max-failures: promoted, it pauses on a
// failure (exit 4, the failure by server and agent, resume/revert printed),
// `rollout revert --yes` puts the upgraded agent back (exit 0), and `rollout
// resume` of a reverted rollout is refused (409, exit 1). Usage errors exit 2.

import t from 'tap';

import { agentWorld } from '../lib/agent-world.js';
import { exits, sapiadm } from '../lib/sapiadm.js';

const UUID = '[0-9a-f-]{36}';

t.test('rollout plans from the CLI', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent', 'config-agent', 'marlin-agent'], taskDurationMs: 20 });
    t.teardown(w.close);
    const servers: string[] = [];
    for (let i = 0; i < 3; i++) {
        const s = w.cnapi.addServer().uuid;
        for (const name of ['vm-agent', 'config-agent', 'marlin-agent']) {
            const r = await w.h.call('POST', '/instances', { body: { service_uuid: w.svc[name]?.uuid, params: { server_uuid: s } }, version: '~2' });
            t.equal(r.status, 200, `${name} installed`, { body: r.text });
        }
        servers.push(s);
    }
    const opts = { url: w.h.url };
    const imagesOf = async (name: string): Promise<string[]> => {
        const r = await w.h.call('GET', `/instances?service_uuid=${w.svc[name]?.uuid}`, { version: '~2' });
        return (r.body as { params: { image_uuid: string } }[]).map((i) => i.params.image_uuid).sort();
    };
    const setImage = async (name: string, image: string): Promise<void> => {
        const r = await w.h.call('PUT', `/services/${w.svc[name]?.uuid}`, { body: { params: { image_uuid: image } }, version: '~2' });
        t.equal(r.status, 200, `${name} service to ${image}`, { body: r.text });
    };

    t.test('usage errors', async (t) => {
        const [both, none, badMax, exclude, autoAlone] = await Promise.all([
            sapiadm(['rollout', 'start', 'vm-agent', '--all-agents'], opts),
            sapiadm(['rollout', 'start'], opts),
            sapiadm(['rollout', '--all-agents', '--max-failures', '5x'], opts),
            sapiadm(['rollout', 'vm-agent', w.svc['vm-agent']?.image as string, '--exclude', 'marlin-agent'], opts),
            sapiadm(['rollout', '--all-agents', '--auto-promote-after', '60'], opts),
        ]);
        for (const r of [both, none, badMax, exclude, autoAlone]) exits(t, r, 2);
        t.match(badMax.stderr, '--max-failures must be a count (at least 1) or a percentage such as 5%');
        t.match(exclude.stderr, '--exclude goes with --all-agents or --service');
        t.match(autoAlone.stderr, '--auto-promote-after goes with --canary');
    });

    t.test('--all-agents --exclude --canary, then promote', async (t) => {
        const vmImg = w.newImage('vm-agent', '2.0.0');
        const cfgImg = w.newImage('config-agent', '2.0.0');
        const marlinImg = w.newImage('marlin-agent', '2.0.0');
        await setImage('vm-agent', vmImg);
        await setImage('config-agent', cfgImg);
        await setImage('marlin-agent', marlinImg);
        const marlinBefore = await imagesOf('marlin-agent');

        const canary = await sapiadm(['rollout', 'start', '--all-agents', '--exclude', 'marlin-agent', '--canary', '1', '--interval', '30'], opts);
        exits(t, canary, 4, 'paused after the canary');
        const id = new RegExp(`^rollout (${UUID}): 6 items on 3 servers`).exec(canary.stdout)?.[1] as string;
        t.ok(id, 'the headline names the plan', { stdout: canary.stdout });
        t.match(canary.stdout, /canary 1 server/);
        t.match(canary.stdout, /servers 1\/3 .*PAUSED \(canary\)/);
        t.match(canary.stdout, /^paused: the 1 canary server is done/m);
        t.match(canary.stdout, `sapiadm rollout promote ${id}`);
        t.notMatch(canary.stdout, 'marlin-agent', 'the excluded agent is not planned');

        const promoted = await sapiadm(['rollout', 'promote', id, '--interval', '30'], opts);
        exits(t, promoted, 0, 'promoted to the end');
        t.match(promoted.stdout, new RegExp(`Rollout ${id} succeeded: plan of 2 agent services`));
        t.match(promoted.stdout, /3 servers \(3 done\), 6 items: 6 succeeded, 0 failed/);
        t.match(promoted.stdout, new RegExp(`vm-agent +to ${vmImg}: 3 succeeded, 0 failed`));
        t.match(promoted.stdout, new RegExp(`config-agent +to ${cfgImg}: 3 succeeded, 0 failed`));
        t.same(await imagesOf('vm-agent'), [vmImg, vmImg, vmImg]);
        t.same(await imagesOf('config-agent'), [cfgImg, cfgImg, cfgImg]);
        t.same(await imagesOf('marlin-agent'), marlinBefore, 'marlin-agent untouched');

        const again = await sapiadm(['rollout', 'promote', id, '--no-watch'], opts);
        exits(t, again, 1, 'a finished rollout cannot be promoted');
        t.match(again.stderr, /\(SAPI 409\)/);

        const status = await sapiadm(['--json', 'rollout', 'status', id], opts);
        exits(t, status, 0);
        t.equal(status.json.state, 'succeeded');
        t.equal(status.json.canary, 1);
    });

    t.test('--auto-promote-after: the watch goes on through the canary pause', async (t) => {
        const cfgImg = w.newImage('config-agent', '4.0.0');
        const r = await sapiadm(['rollout', '--service', `config-agent=${cfgImg}`, '--canary', '1', '--auto-promote-after', '0', '--interval', '30'], opts);
        exits(t, r, 0, 'promoted by itself, then done');
        t.match(r.stdout, /canary 1 server \(auto-promote after 0ms\)/);
        t.match(r.stdout, /succeeded: plan of 1 agent service/);
        t.same(await imagesOf('config-agent'), [cfgImg, cfgImg, cfgImg]);
    });

    t.test('--service NAME=IMAGE --canary --max-failures: promote, pause on a failure, revert', async (t) => {
        const before = await imagesOf('vm-agent');
        const vmImg = w.newImage('vm-agent', '3.0.0');
        const args = ['rollout', '--service', `vm-agent=${vmImg}`, '--canary', '1', '--max-failures', '1', '--concurrency', '1', '--interval', '30'];
        const canary = await sapiadm(args, opts);
        exits(t, canary, 4, 'paused after the canary');
        const id = new RegExp(`^rollout (${UUID}): 3 items on 3 servers`).exec(canary.stdout)?.[1] as string;
        t.ok(id, 'the headline', { stdout: canary.stdout });
        t.match(canary.stdout, 'max failures 1');

        // The servers after the canary fail: the first failure pauses the rollout, the last server waits.
        const status = await sapiadm(['--json', 'rollout', 'status', id], opts);
        exits(t, status, 4, 'status of a paused rollout');
        const done = (status.json.items as { server_uuid: string; state: string }[]).filter((i) => i.state === 'succeeded').map((i) => i.server_uuid);
        t.equal(done.length, 1, 'the canary server is upgraded');
        for (const s of servers) {
            if (s !== done[0]) w.cnapi.planTaskOn(s, { fail: 'AgentInstall error: Unexpected file size (1 vs 2)' });
        }
        const paused = await sapiadm(['rollout', 'promote', id, '--interval', '30'], opts);
        exits(t, paused, 4, 'paused on the failure');
        t.match(paused.stdout, new RegExp(`failed: server ${UUID}, vm-agent \\(instance ${UUID}\\): [^\\n]*Unexpected file size`));
        t.match(paused.stdout, /^paused: 1 failed item reached max failures 1$/m);
        t.match(paused.stdout, `sapiadm rollout resume ${id}`);
        t.match(paused.stdout, `sapiadm rollout revert ${id}`);
        t.match(paused.stdout, /1 succeeded, 1 failed.*, 1 not finished/);

        const reverted = await sapiadm(['rollout', 'revert', id, '--yes', '--interval', '30'], opts);
        exits(t, reverted, 0, 'reverted');
        t.match(reverted.stdout, new RegExp(`Rollout ${id} reverted: plan of 1 agent service`));
        t.match(reverted.stdout, /revert: 1 of 1 agent back on the previous image/);
        t.same(await imagesOf('vm-agent'), before, 'every vm-agent on its previous image');

        const resume = await sapiadm(['rollout', 'resume', id], opts);
        exits(t, resume, 1, 'a reverted rollout cannot resume');
        t.match(resume.stderr, /\(SAPI 409\)/);
    });
});
