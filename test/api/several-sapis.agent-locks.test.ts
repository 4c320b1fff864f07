// Two SAPI processes on one Moray, agent operations on one server through
// both at once: the per-server lock is a lease in Moray, so CNAPI never
// has two agent tasks of that server running together (counted from the
// fake CNAPI's task records). The loser of a race gets 409
// OperationInProgress and succeeds once it tries again.

import t from 'tap';

import { sleep, twoAgentSapis, type Answer, type SapiProcess } from './several-sapis.lib.js';

t.test('agent operations on one server through two SAPIs never overlap', async (t) => {
    const { moray, imgapi, cnapi, a, b, agentService } = await twoAgentSapis(t, { taskDurationMs: 250, leaseTtlMs: 1500, taskDeadlineMs: 10_000 });
    const names = ['vm-agent', 'config-agent', 'net-agent', 'firewaller'];
    const svc: Record<string, string> = {};
    for (const name of names) {
        svc[name] = await agentService(name, imgapi.addImage({ name, version: '1.0.0' }).uuid);
    }
    const server = cnapi.addServer().uuid;

    const install = (s: SapiProcess, name: string): Promise<Answer> =>
        s.call('POST', '/instances', { body: { service_uuid: svc[name], params: { server_uuid: server } }, version: '~2' });
    /** Until it is not a 409 (the loser of a race tries again). */
    const until = async (op: () => Promise<Answer>): Promise<{ last: Answer; busy: number }> => {
        let busy = 0;
        for (let i = 0; i < 200; i++) {
            const r = await op();
            if (r.status !== 409 || r.body?.code !== 'OperationInProgress') {
                return { last: r, busy };
            }
            busy++;
            await sleep(50);
        }
        throw new Error('the server stayed busy');
    };

    // Installs of different agents on one server, two at a time, one through each SAPI.
    let busy = 0;
    const uuids: Record<string, string> = {};
    for (const [x, y] of [
        ['vm-agent', 'config-agent'],
        ['net-agent', 'firewaller'],
    ] as const) {
        const [rx, ry] = await Promise.all([until(() => install(a, x)), until(() => install(b, y))]);
        t.equal(rx.last.status, 200, rx.last.text);
        t.equal(ry.last.status, 200, ry.last.text);
        uuids[x] = rx.last.body.uuid;
        uuids[y] = ry.last.body.uuid;
        busy += rx.busy + ry.busy;
    }

    // Upgrades of two agents at once, through both SAPIs.
    const upgrade = (s: SapiProcess, name: string): Promise<{ last: Answer; busy: number }> => {
        const image = imgapi.addImage({ name, version: '1.0.1' }).uuid;
        return until(() => s.call('PUT', `/instances/${uuids[name] as string}/upgrade`, { body: { image_uuid: image }, version: '~2' }));
    };
    const [ua, ub] = await Promise.all([upgrade(a, 'vm-agent'), upgrade(b, 'config-agent')]);
    t.equal(ua.last.status, 200, ua.last.text);
    t.equal(ub.last.status, 200, ub.last.text);
    busy += ua.busy + ub.busy;

    // CNAPI's view: each task's run, from its creation to its finish.
    const tasks = [...cnapi.state.tasks.values()].filter((x) => x.server_uuid === server);
    t.equal(tasks.length, 6, 'four installs and two upgrades, each one task');
    const runs = tasks.map((x) => ({ start: Date.parse(x.timestamp), end: Date.parse(x.history?.at(-1)?.timestamp ?? '') })).sort((p, q) => p.start - q.start);
    t.ok(
        runs.every((r) => Number.isFinite(r.end)),
        'every task finished',
    );
    let overlaps = 0;
    for (let i = 1; i < runs.length; i++) {
        if ((runs[i]?.start as number) < (runs[i - 1]?.end as number)) {
            overlaps++;
        }
    }
    t.equal(overlaps, 0, 'no task began before the previous one on the server finished');
    t.comment(`409 OperationInProgress answers seen (and retried): ${busy}`);
    t.ok(moray.state.buckets.get('sapi_leases'), 'the locks live in Moray');
});
