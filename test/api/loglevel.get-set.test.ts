// GET/POST /loglevel: read and change the bunyan level at run time; an unknown level is 409, not a crash.

import bunyan from 'bunyan';
import t from 'tap';

import { isError } from '../lib/api-assert.js';
import { startSapi } from '../lib/harness.js';

t.test('GET /loglevel is {level: <bunyan number>}', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const r = await h.call('GET', '/loglevel');
    t.equal(r.status, 200);
    t.strictSame(r.body, { level: h.ctx.log.level() });
    t.type(r.body.level, 'number');
});

t.test('POST /loglevel sets by name or number, answers 200 with an empty body', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const cases: [unknown, number][] = [
        ['error', bunyan.ERROR],
        ['WARN', bunyan.WARN],
        [50, bunyan.ERROR],
        ['60', bunyan.FATAL],
    ];
    for (const [level, expected] of cases) {
        const r = await h.call('POST', '/loglevel', { body: { level } });
        t.equal(r.status, 200, `level ${JSON.stringify(level)}`);
        t.equal(r.text, '', 'empty body');
        t.strictSame((await h.call('GET', '/loglevel')).body, { level: expected });
    }
    t.equal((await h.call('POST', '/loglevel?level=error')).status, 200, 'from the query string too');
    t.strictSame((await h.call('GET', '/loglevel')).body, { level: bunyan.ERROR });
    t.equal((await h.call('POST', '/loglevel', { body: { level: 'fatal' } })).status, 200);
});

t.test('a missing level changes nothing (200)', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const before = (await h.call('GET', '/loglevel')).body;
    const r = await h.call('POST', '/loglevel', { body: {} });
    t.equal(r.status, 200);
    t.strictSame((await h.call('GET', '/loglevel')).body, before);
});

t.test('an unknown level is 409 InvalidArgument "invalid level: <level>"; the level and the server are unchanged', async (t) => {
    const h = await startSapi();
    t.teardown(h.close);
    const before = (await h.call('GET', '/loglevel')).body;
    isError(t, await h.call('POST', '/loglevel', { body: { level: 'banana' } }), 409, 'InvalidArgument', 'invalid level: banana');
    isError(t, await h.call('POST', '/loglevel?level=42'), 409, 'InvalidArgument', 'invalid level: 42');
    t.strictSame((await h.call('GET', '/loglevel')).body, before);
    t.equal((await h.call('GET', '/ping')).status, 200, 'still up');
});
