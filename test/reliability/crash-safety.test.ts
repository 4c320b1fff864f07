// Crash safety: SIGKILL the server in the middle of a stream of creates;
// after a restart every acknowledged create is there. The kill comes after
// a number of acknowledged creates, not after a time, so a slow machine
// kills at the same point of the stream; the create rate is npm run bench's.

import t from 'tap';

import { childSapi, exited } from '../lib/child.js';
import { OWNER } from '../lib/fixtures.js';

t.test('every 2xx create survives a SIGKILL', async (t) => {
    const child = await childSapi(t);
    const url = child.url;
    const proc = await child.start();
    const post = async (path: string, body: unknown): Promise<Response> =>
        fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const app = (await (await post('/applications', { name: 'sdc', owner_uuid: OWNER })).json()) as { uuid: string };
    const svc = (await (await post('/services', { name: 'x', application_uuid: app.uuid })).json()) as { uuid: string };

    const KILL_AFTER = 200;
    const acked: string[] = [];
    let tried = 0;
    let enoughAcked = (): void => undefined;
    const enough = new Promise<void>((resolve) => (enoughAcked = resolve));
    const writers = Array.from({ length: 8 }, async () => {
        for (;;) {
            tried++;
            try {
                const r = await post('/instances', { service_uuid: svc.uuid });
                if (r.status !== 200) {
                    return;
                }
                acked.push(((await r.json()) as { uuid: string }).uuid);
                if (acked.length === KILL_AFTER) enoughAcked();
            } catch {
                return; // the server is gone
            }
        }
    });
    const stopped = Promise.all(writers).then(() => {
        throw new Error(`the writers stopped after ${acked.length} acknowledged creates, before the kill`);
    });
    await Promise.race([enough, stopped]);
    const inFlight = tried - acked.length;
    proc.kill('SIGKILL');
    await Promise.all(writers);
    await exited(proc);

    await child.start(); // restart on the same store
    const list = (await (await fetch(`${url}/instances?service_uuid=${svc.uuid}`)).json()) as { uuid: string }[];
    const present = new Set(list.map((i) => i.uuid));
    const lost = acked.filter((u) => !present.has(u));
    t.comment(`crash-safety: ${tried} creates tried, ${acked.length} acknowledged, ${lost.length} writes lost`);
    t.ok(acked.length >= KILL_AFTER && inFlight > 0, `killed with creates in flight (${inFlight} of 8 writers mid-request)`);
    t.equal(lost.length, 0, 'no acknowledged create lost');
});
