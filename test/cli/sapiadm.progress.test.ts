// The rollout progress view on a terminal: one bar redrawn in place with
// \r, warnings and failures printed on their own lines as they appear,
// and the end summary (in-process; the binary's non-TTY output is covered
// by sapiadm.rollout.test.ts).

import { PassThrough } from 'node:stream';

import t from 'tap';

import { Cli } from '../../lib/cli/common.js';
import { ProgressView, summary } from '../../lib/cli/progress.js';
import type { ItemState, Rollout } from '../../lib/rollout/types.js';

const I1 = '11111111-1111-4111-8111-111111111111';
const I2 = '22222222-2222-4222-8222-222222222222';
const S1 = '33333333-3333-4333-8333-333333333333';
const S2 = '44444444-4444-4444-8444-444444444444';

function rollout(states: [ItemState, ItemState], extra: Partial<Rollout> = {}): Rollout {
    const counts = { pending: 0, running: 0, succeeded: 0, failed: 0, stalled: 0, canceled: 0 };
    for (const s of states) counts[s] += 1;
    return {
        uuid: '55555555-5555-4555-8555-555555555555',
        service_name: 'vm-agent',
        service_uuid: '66666666-6666-4666-8666-666666666666',
        image_uuid: '77777777-7777-4777-8777-777777777777',
        concurrency: 2,
        stall_factor: 3,
        stall_min_finished: 3,
        instance_timeout_ms: 60_000,
        state: 'running',
        created_at: new Date(Date.now() - 5000).toISOString(),
        counts,
        warnings: [],
        items: [
            { instance_uuid: I1, server_uuid: S1, state: states[0], attempts: 1 },
            { instance_uuid: I2, server_uuid: S2, state: states[1], attempts: 1 },
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
