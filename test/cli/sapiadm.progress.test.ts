// The rollout progress view on a terminal: one bar redrawn in place with
// \r, warnings and failures printed on their own lines as they appear,
// and the end summary; for a plan, servers done, the pause and what to run
// then, per-agent counts and failures by server and agent (in-process; the
// binary's non-TTY output is covered by the sapiadm.rollout tests).

import { PassThrough } from 'node:stream';

import t from 'tap';

import { Cli } from '../../lib/cli/common.js';
import { ProgressView, summary } from '../../lib/cli/progress.js';
import { exitFor } from '../../lib/cli/rollout.js';
import type { ItemState, Rollout, RolloutItem } from '../../lib/rollout/types.js';

const I1 = '11111111-1111-4111-8111-111111111111';
const I2 = '22222222-2222-4222-8222-222222222222';
const S1 = '33333333-3333-4333-8333-333333333333';
const S2 = '44444444-4444-4444-8444-444444444444';
const SVC = '66666666-6666-4666-8666-666666666666';
const IMG = '77777777-7777-4777-8777-777777777777';

/** What every rollout here has: its uuid, the stall settings, running since 5 s ago, the counts of its items' `states`. */
function rolloutBase(states: readonly ItemState[]) {
    const counts: Record<ItemState, number> = { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0, skipped: 0 };
    for (const s of states) counts[s] += 1;
    return {
        uuid: '55555555-5555-4555-8555-555555555555',
        stall_factor: 3,
        stall_min_finished: 3,
        instance_timeout_ms: 60_000,
        state: 'running' as const,
        created_at: new Date(Date.now() - 5000).toISOString(),
        counts,
    };
}

function rollout(states: [ItemState, ItemState], extra: Partial<Rollout> = {}): Rollout {
    const base = rolloutBase(states);
    const { counts } = base;
    return {
        ...base,
        service_name: 'vm-agent',
        service_uuid: SVC,
        image_uuid: IMG,
        concurrency: 2,
        totals: { servers: 2, servers_done: 0, items: 2, succeeded: counts.succeeded, failed: counts.failed, skipped: 0 },
        warnings: [],
        items: [
            { instance_uuid: I1, server_uuid: S1, service_uuid: SVC, service_name: 'vm-agent', to_image: IMG, state: states[0], attempts: 1 },
            { instance_uuid: I2, server_uuid: S2, service_uuid: SVC, service_name: 'vm-agent', to_image: IMG, state: states[1], attempts: 1 },
        ],
        ...extra,
    };
}

t.test('a TTY gets one redrawn line, events above it', async (t) => {
    const stdout = Object.assign(new PassThrough(), { isTTY: true });
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    const cli = new Cli({ stdout, stderr: new PassThrough(), stdin: new PassThrough(), env: {} });
    t.equal(cli.isTTY, true);
    const view = new ProgressView(cli, cli.isTTY);

    view.update(rollout(['running', 'running']));
    view.update(rollout(['succeeded', 'stalled'], { average_ms: 1200, warnings: ['instance X has run 9s, over 3x the average 1.2s'] }));
    const failed = rollout(['succeeded', 'failed'], { average_ms: 1200, warnings: ['instance X has run 9s, over 3x the average 1.2s'] });
    (failed.items[1] as { error?: string }).error = 'Task 9 failed with error: AgentInstall error: boom';
    view.update(failed);
    const done = { ...failed, state: 'failed' as const, finished_at: new Date(Date.parse(failed.created_at) + 5000).toISOString() };
    view.update(done);
    view.finish();

    t.equal(out.split('\n').length - 1, 3, 'newlines only after events and at the end');
    t.match(out, /^\[\.{24}\] 0\/2 {2}pending 0 {2}running 2 {2}succeeded 0 {2}failed 0 {2}stalled 0 {2}avg - {2}elapsed 5\.\ds\r/);
    t.equal(out.split('\r\x1b[K').length - 1, 3, 'the bar is erased before each redraw');
    t.match(out, '\r\x1b[Kwarning: instance X has run 9s, over 3x the average 1.2s\n[############............] 1/2');
    t.match(out, `\r\x1b[Kfailed: instance ${I2} on server ${S2}: Task 9 failed with error: AgentInstall error: boom\n`);
    t.match(out, /\[#{24}\] 2\/2 .* avg 1\.2s {2}elapsed 5\.0s\n$/, 'the last bar stays');
    t.equal((out.match(/warning:/g) ?? []).length, 1, 'each warning once');
    t.equal((out.match(/failed: instance/g) ?? []).length, 1, 'each failure once');

    t.same(summary(done), [
        `Rollout ${done.uuid} failed: vm-agent to image ${done.image_uuid}`,
        '  2 instances: 1 succeeded, 1 failed; average 1.2s; took 5.0s',
        '  failed:',
        `    instance ${I2} on server ${S2}: Task 9 failed with error: AgentInstall error: boom`,
        `  1 warning (see above or \`sapiadm rollout status ${done.uuid}\`)`,
    ]);
});

t.test('a plan: servers done, per-agent counts, pause with the commands, failures by server and agent', async (t) => {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    const cli = new Cli({ stdout, stderr: new PassThrough(), stdin: new PassThrough(), env: {} });
    const view = new ProgressView(cli, false);
    const CN = '88888888-8888-4888-8888-888888888888';
    const CN_IMG = '99999999-9999-4999-8999-999999999999';
    const item = (server: string, inst: string, agent: 'cn-agent' | 'vm-agent', state: ItemState, error?: string): Rollout['items'][number] => ({
        instance_uuid: inst,
        server_uuid: server,
        service_uuid: agent === 'cn-agent' ? CN : SVC,
        service_name: agent,
        from_image: '00000000-0000-4000-8000-000000000000',
        to_image: agent === 'cn-agent' ? CN_IMG : IMG,
        state,
        attempts: 1,
        ...(error ? { error } : {}),
    });
    const plan = (items: Rollout['items'], extra: Partial<Rollout>): Rollout => {
        const base = rolloutBase(items.map((i) => i.state));
        const { counts } = base;
        const servers = [...new Set(items.map((i) => i.server_uuid))];
        const done = servers.filter((s) => items.every((i) => i.server_uuid !== s || !['pending', 'running', 'stalled'].includes(i.state)));
        return {
            ...base,
            service_name: 'cn-agent,vm-agent',
            services: [
                { service_uuid: CN, service_name: 'cn-agent', image_uuid: CN_IMG },
                { service_uuid: SVC, service_name: 'vm-agent', image_uuid: IMG },
            ],
            concurrency: 20,
            canary: 1,
            totals: {
                servers: servers.length,
                servers_done: done.length,
                items: items.length,
                succeeded: counts.succeeded,
                failed: counts.failed,
                skipped: counts.skipped,
            },
            average_ms: 800,
            warnings: [],
            items,
            ...extra,
        };
    };
    const I3 = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
    const I4 = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
    view.update(
        plan(
            [
                item(S1, I1, 'cn-agent', 'running'),
                item(S1, I2, 'vm-agent', 'pending'),
                item(S2, I3, 'cn-agent', 'pending'),
                item(S2, I4, 'vm-agent', 'pending'),
            ],
            {},
        ),
    );
    const paused = plan(
        [item(S1, I1, 'cn-agent', 'succeeded'), item(S1, I2, 'vm-agent', 'skipped'), item(S2, I3, 'cn-agent', 'pending'), item(S2, I4, 'vm-agent', 'pending')],
        { state: 'paused', paused_reason: 'canary' },
    );
    view.update(paused);
    t.match(out, /^\[\.{24}\] 0\/4 {2}servers 0\/2 {2}pending 3 {2}running 1 /m, 'servers done / servers');
    t.match(out, /\[#{12}\.{12}\] 2\/4 {2}servers 1\/2 {2}pending 2 {2}running 0 {2}succeeded 1 {2}failed 0 {2}stalled 0 {2}skipped 1 .* PAUSED \(canary\)$/m);
    t.match(out, /^paused: the 1 canary server is done$/m, 'the pause as an event');

    const failed = plan(
        [
            item(S1, I1, 'cn-agent', 'succeeded'),
            item(S1, I2, 'vm-agent', 'skipped'),
            item(S2, I3, 'cn-agent', 'failed', 'AgentInstall error: boom'),
            item(S2, I4, 'vm-agent', 'canceled'),
        ],
        { state: 'paused', paused_reason: 'failures', max_failures: 1 },
    );
    view.update(failed);
    t.match(out, `failed: server ${S2}, cn-agent (instance ${I3}): AgentInstall error: boom`);
    t.match(out, /^paused: 1 failed item reached max failures 1$/m);
    t.same(summary(failed).slice(0, 4), [
        `Rollout ${failed.uuid} paused (failures): plan of 2 agent services`,
        '  2 servers (2 done), 4 items: 1 succeeded, 1 failed, 1 skipped (already on the image), 1 canceled; average 800ms; still running',
        '  per agent:',
        `    cn-agent  to ${CN_IMG}: 1 succeeded, 1 failed`,
    ]);
    const text = summary(failed).join('\n');
    t.match(text, `    vm-agent  to ${IMG}: 0 succeeded, 0 failed, 1 skipped, 1 canceled`);
    t.match(text, `  failed:\n    server ${S2}, cn-agent (instance ${I3}): AgentInstall error: boom`);
    t.match(text, `sapiadm rollout resume ${failed.uuid}`);
    t.match(text, `sapiadm rollout revert ${failed.uuid}`);
    t.notMatch(summary(paused).join('\n'), 'rollout resume', 'a canary pause offers promote, not resume');
    t.match(summary(paused).join('\n'), `sapiadm rollout promote ${paused.uuid}`);
});

t.test('no silent success: the exit status and the summary of a rollout that upgraded nothing', async (t) => {
    const finished = new Date().toISOString();
    const newer: Partial<RolloutItem> = { state: 'skipped', attempts: 0, reason: 'newer than the target (1.2.0 > 1.1.0); allow_downgrade to go back' };
    const atTarget: Partial<RolloutItem> = { state: 'skipped', attempts: 0, reason: 'already at the target image' };
    const notReady: Partial<RolloutItem> = { state: 'failed', attempts: 0, reason: 'server not ready', error: `server ${S2} is not running` };
    const upgraded: Partial<RolloutItem> = { state: 'succeeded', attempts: 1, started_at: finished };
    const broke: Partial<RolloutItem> = { state: 'failed', attempts: 1, started_at: finished, error: 'AgentInstall error: boom' };
    const ended = (state: Rollout['state'], a: Partial<RolloutItem>, b: Partial<RolloutItem>): Rollout => {
        const r = rollout([a.state as ItemState, b.state as ItemState], {
            state,
            created_at: new Date(Date.parse(finished) - 5000).toISOString(),
            finished_at: finished,
        });
        r.items = [
            { ...(r.items[0] as RolloutItem), ...a },
            { ...(r.items[1] as RolloutItem), ...b },
        ];
        return r;
    };
    const cases: [string, Rollout, number, RegExp | undefined][] = [
        [
            'newer agents left: unfinished work',
            ended('succeeded', newer, atTarget),
            3,
            /^ {2}nothing was upgraded: 1 agent newer than the target \(--allow-downgrade goes back\), 1 already at the target$/m,
        ],
        [
            'a server not ready and nothing else run',
            ended('failed', notReady, atTarget),
            3,
            /^ {2}nothing was upgraded: 1 item on servers not ready, 1 already at the target$/m,
        ],
        ['every agent at its target', ended('succeeded', atTarget, atTarget), 0, /^ {2}nothing needed upgrading: every agent is already at its target image$/m],
        ['an upgrade, and a newer agent left', ended('succeeded', upgraded, newer), 0, undefined],
        ['an item failed while running', ended('failed', broke, newer), 1, undefined],
        ['canceled', ended('canceled', atTarget, atTarget), 1, undefined],
    ];
    for (const [what, r, code, line] of cases) {
        t.equal(exitFor(r), code, `${what}: exit ${code}`);
        const text = summary(r).join('\n');
        if (line) t.match(text, line, `${what}: says why`);
        else t.notMatch(text, /nothing (was|needed)/, `${what}: no "nothing" line`);
        t.notMatch(text, 'took still running');
    }
    t.match(
        summary(ended('succeeded', upgraded, newer))[1],
        /2 instances: 1 succeeded, 0 failed, 1 skipped \(newer than the target\); average .*; took 5\.0s$/,
    );
    t.match(summary(ended('succeeded', atTarget, newer))[1], /2 skipped \(1 already on the image, 1 newer than the target\)/);
    t.equal(exitFor(rollout(['succeeded', 'pending'], { state: 'paused', paused_reason: 'canary' })), 4, 'paused');
    t.equal(exitFor(rollout(['succeeded', 'succeeded'], { state: 'reverted' })), 0, 'reverted');
});
