// sapiadm rollouts an operator can trust, against the fake CNAPI and
// IMGAPI: `rollout plan` and `rollout start --dry-run` print the plan server
// by server (versions and images, what is skipped or fails and why) and
// start nothing; no silent success: a plan that matches no instance exits 1,
// a rollout that upgraded nothing because the agents are newer or their
// servers not ready exits 3 and says why, one where every agent was at its
// target exits 0 and says nothing needed upgrading; --allow-downgrade goes
// back; `rollout list` pages the summaries (--limit, --state); cancel and
// revert ask on a terminal and refuse without --yes elsewhere.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { agentWorld, rolloutWhen, type AgentWorld } from '../lib/agent-world.js';
import { exits, sapiadm, sapiadmAtTerminal } from '../lib/sapiadm.js';

const UUID = '[0-9a-f-]{36}';

/** A server whose vm-agent (at `version`, on the service's image) is recorded in SAPI. */
async function vmAgentAt(w: AgentWorld, version: string, image = w.svc['vm-agent']?.image as string): Promise<string> {
    const uuid = randomUUID();
    const server = w.cnapi.addServer({ agents: [{ name: 'vm-agent', version, image_uuid: image, uuid }] }).uuid;
    const r = await w.h.call('POST', '/instances', {
        body: { service_uuid: w.svc['vm-agent']?.uuid, uuid, params: { server_uuid: server, image_uuid: image } },
    });
    if (r.status !== 200) throw new Error(r.text);
    return server;
}

const rolloutCount = async (w: AgentWorld): Promise<number> => ((await w.h.call('GET', '/rollouts', { version: '~2' })).body as unknown[]).length;
const installs = (w: AgentWorld): number => w.cnapi.state.taskLog.length;

t.test('plans, outcomes, the list and confirmations from the CLI', async (t) => {
    const w = await agentWorld({ agents: ['vm-agent'], taskDurationMs: 10 });
    t.teardown(w.close);
    const target = w.newImage('vm-agent', '1.1.0');
    const OLD = await vmAgentAt(w, '1.0.0');
    const DOWN = await vmAgentAt(w, '1.0.0');
    const AT = await vmAgentAt(w, '1.1.0', target);
    const NEWER = await vmAgentAt(w, '1.2.0', w.newImage('vm-agent', '1.2.0'));
    const down = w.cnapi.state.servers.get(DOWN);
    if (down) down.status = 'unknown';
    const opts = { url: w.h.url };
    const ids: string[] = [];

    t.test('rollout plan and start --dry-run: per server, start nothing', async (t) => {
        const before = { rollouts: await rolloutCount(w), installs: installs(w) };
        const servers = [OLD, DOWN, AT, NEWER].join(',');
        const [plan, dry, json, down] = await Promise.all([
            sapiadm(['rollout', 'plan', 'vm-agent', target, '--servers', servers], opts),
            sapiadm(['rollout', 'start', 'vm-agent', target, '--servers', servers, '--dry-run'], opts),
            sapiadm(['--json', 'rollout', 'plan', 'vm-agent', target, '--servers', servers], opts),
            sapiadm(['rollout', 'plan', 'vm-agent', target, '--servers', NEWER, '--allow-downgrade'], opts),
        ]);
        exits(t, plan, 0, 'a plan is printed');
        exits(t, dry, 0, 'a dry run is a plan');
        t.equal(dry.stdout, plan.stdout, 'start --dry-run prints what plan does');
        const text = plan.stdout;
        t.match(text, new RegExp(`^plan \\(dry run, nothing started\\): 4 vm-agent instance\\(s\\) to image ${target}`));
        t.match(text, /^1 of 4 item\(s\) on 4 server\(s\) would /m, "SAPI's summary of the plan");
        const block = (server: string): string => new RegExp(`^server ${server}\\n(  .*\\n)+`, 'm').exec(text)?.[0] ?? '';
        t.match(block(OLD), new RegExp(`upgrade +vm-agent {2}1\\.0\\.0 → 1\\.1\\.0 {2}\\(image ${UUID} → ${target}\\)\\n`), 'an upgrade: versions and images');
        t.match(
            block(DOWN),
            new RegExp(`fail +vm-agent .*\\(image ${UUID} → ${target}\\): server not ready \\(.*is not running.*\\)`),
            'fails before running, and why',
        );
        t.match(block(AT), new RegExp(`skip +vm-agent {2}1\\.1\\.0 → 1\\.1\\.0 {2}\\(image ${target}\\): already at the target image`));
        t.match(block(NEWER), /skip +vm-agent {2}1\.2\.0 → 1\.1\.0 .*: newer than the target \(1\.2\.0 > 1\.1\.0\); allow_downgrade to go back/);
        t.match(text, 'To start it: the same options with `sapiadm rollout start`');

        exits(t, json, 0);
        t.equal(json.json.dry_run, true);
        t.equal(json.json.state, 'planned');
        t.equal(json.json.uuid, undefined);
        t.equal(json.json.servers.length, 4, 'grouped by server');

        exits(t, down, 0);
        t.match(down.stdout, /downgrade +vm-agent {2}1\.2\.0 → 1\.1\.0/, '--allow-downgrade: the newer agent goes back');
        t.match(down.stdout, 'downgrades allowed');

        t.equal(await rolloutCount(w), before.rollouts, 'no rollout stored');
        t.equal(installs(w), before.installs, 'nothing installed');
    });

    t.test('nothing to roll out: exit 1 with the message', async (t) => {
        const typo = randomUUID();
        const [run, plan] = await Promise.all([
            sapiadm(['rollout', 'vm-agent', target, '--servers', typo], opts),
            sapiadm(['rollout', 'plan', 'vm-agent', target, '--servers', typo], opts),
        ]);
        for (const r of [run, plan]) {
            exits(t, r, 1);
            t.match(r.stderr, new RegExp(`^sapiadm: InvalidArgument: nothing to roll out: no instance of vm-agent on server\\(s\\) ${typo}`, 'm'));
        }
    });

    t.test('upgraded nothing: newer or not ready exits 3 and says why; all at the target exits 0 and says so', async (t) => {
        const [newer, notReady, atTarget, newerJson] = await Promise.all([
            sapiadm(['rollout', 'vm-agent', target, '--servers', NEWER, '--interval', '20'], opts),
            sapiadm(['rollout', 'vm-agent', target, '--servers', DOWN, '--interval', '20'], opts),
            sapiadm(['rollout', 'vm-agent', target, '--servers', AT, '--no-watch'], opts),
            sapiadm(['--json', 'rollout', 'vm-agent', target, '--servers', NEWER, '--no-watch'], opts),
        ]);
        exits(t, newer, 3, 'the newer agent is left: unfinished work');
        t.match(newer.stdout, /1 instance: 0 succeeded, 0 failed, 1 skipped \(newer than the target\); average -; took /);
        t.match(newer.stdout, /^ {2}nothing was upgraded: 1 agent newer than the target \(--allow-downgrade goes back\)$/m);
        exits(t, notReady, 3, 'a server not ready: unfinished work');
        t.match(notReady.stdout, /^ {2}nothing was upgraded: 1 item on servers not ready$/m);
        exits(t, atTarget, 0, 'nothing needed');
        t.match(atTarget.stdout, /^ {2}nothing needed upgrading: every agent is already at its target image$/m, '--no-watch: it ended at once, and says so');
        exits(t, newerJson, 3);
        t.equal(newerJson.json.state, 'succeeded', 'stdout: the rollout');
        t.match(newerJson.stderr, /nothing was upgraded: 1 agent newer than the target/);
        for (const r of [newer, notReady, atTarget]) {
            const id = new RegExp(`Rollout (${UUID}) `).exec(r.stdout)?.[1];
            if (id) ids.push(id);
        }
        t.equal(w.cnapi.agentsOf(NEWER).find((a) => a.name === 'vm-agent')?.version, '1.2.0', 'not downgraded');

        const back = await sapiadm(['rollout', 'vm-agent', target, '--servers', NEWER, '--allow-downgrade', '--interval', '20'], opts);
        exits(t, back, 0, '--allow-downgrade: downgraded');
        t.match(back.stdout, /downgrades allowed/);
        t.match(back.stdout, /1 instance: 1 succeeded, 0 failed; average \S+; took /);
        t.equal(w.cnapi.agentsOf(NEWER).find((a) => a.name === 'vm-agent')?.version, '1.1.0');
        ids.push(new RegExp(`Rollout (${UUID}) `).exec(back.stdout)?.[1] as string);

        const up = await sapiadm(['rollout', 'vm-agent', target, '--servers', OLD, '--interval', '20'], opts);
        exits(t, up, 0, 'an upgrade');
        t.notMatch(up.stdout, 'nothing', 'no "nothing" line when something was upgraded');
        ids.push(new RegExp(`Rollout (${UUID}) `).exec(up.stdout)?.[1] as string);
    });

    t.test('rollout list: summaries newest first, every page, --limit, --state', async (t) => {
        const api = (await w.h.call('GET', '/rollouts', { version: '~2' })).body as { uuid: string; state: string }[];
        t.ok(api.length >= 5, 'the rollouts of the tests above');
        const [all, paged, limited, failed, table, badState] = await Promise.all([
            sapiadm(['--json', 'rollout', 'list'], opts),
            sapiadm(['--json', 'rollout', 'list', '--page-size', '2'], opts),
            sapiadm(['--json', 'rollout', 'list', '--limit', '3', '--page-size', '2'], opts),
            sapiadm(['--json', 'rollout', 'list', '--state', 'failed'], opts),
            sapiadm(['rollout', 'list', '--limit', '2'], opts),
            sapiadm(['rollout', 'list', '--state', 'done'], opts),
        ]);
        for (const r of [all, paged, limited, failed, table]) exits(t, r, 0);
        const uuids = (r: { json: { uuid: string }[] }): string[] => r.json.map((x) => x.uuid);
        t.same(
            uuids(all),
            api.map((r) => r.uuid),
            'newest first, as SAPI orders them',
        );
        t.ok(
            (all.json as Record<string, unknown>[]).every((r) => r.items === undefined),
            'summaries: no items',
        );
        t.same(uuids(paged), uuids(all), 'two at a time, through every page');
        t.same(uuids(limited), uuids(all).slice(0, 3), '--limit: the newest N');
        t.same(
            uuids(failed),
            api.filter((r) => r.state === 'failed').map((r) => r.uuid),
            '--state',
        );
        t.ok(failed.json.length >= 1, 'the rollout whose server was not ready failed');
        const rows = table.stdout.trimEnd().split('\n');
        t.match(rows[0], /^UUID\s+SERVICE\s+IMAGE\s+STATE\s+DONE\s+FAILED\s+SKIPPED\s+AVG\s+CREATED$/);
        t.equal(rows.length, 3, 'a header and two rows');
        exits(t, badState, 2);
        t.match(badState.stderr, '--state must be one of running, paused, reverting, succeeded, failed, canceled, reverted: done');
    });

    t.test('cancel and revert: refused without --yes off a terminal, asked on one', async (t) => {
        const id = ids[ids.length - 1] as string;
        const [cancel, revert] = await Promise.all([sapiadm(['rollout', 'cancel', id], opts), sapiadm(['rollout', 'revert', id], opts)]);
        exits(t, cancel, 2, 'cancel refused');
        t.match(cancel.stderr, `sapiadm: refusing to cancel rollout ${id} without --yes (not a terminal)`);
        exits(t, revert, 2, 'revert refused');
        t.match(revert.stderr, `sapiadm: refusing to revert rollout ${id} without --yes (not a terminal)`);
        t.equal((await w.h.call('GET', `/rollouts/${id}`, { version: '~2' })).body.state, 'succeeded', 'untouched');

        const no = await sapiadmAtTerminal(['rollout', 'revert', id], { url: w.h.url, answer: 'n' });
        t.ok(no.asked, 'asked on a terminal');
        t.match(no.stderr, new RegExp(`Revert rollout ${id} \\(succeeded\\): put the 1 agent it upgraded back on the previous image\\? \\[y/N\\] `));
        t.equal(no.code, 2, 'not answered y: exit 2');
        t.match(no.stderr, `Nothing changed: rollout ${id} not reverted.`);
        t.equal((await w.h.call('GET', `/rollouts/${id}`, { version: '~2' })).body.state, 'succeeded', 'untouched');

        const yes = await sapiadm(['rollout', 'revert', id, '--yes', '--interval', '20'], opts);
        exits(t, yes, 0, 'reverted with --yes');
        t.match(yes.stdout, new RegExp(`Rollout ${id} reverted`));
        const done = await rolloutWhen(w.h, id, (b: { state: string }) => b.state === 'reverted');
        t.equal(done.state, 'reverted');

        const canceled = await sapiadm(['rollout', 'cancel', id, '--yes'], opts);
        exits(t, canceled, 0, 'cancel with --yes (a finished rollout is answered as it is)');
        t.match(canceled.stdout, `rollout ${id}: reverted`);
    });
});
