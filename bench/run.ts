// npm run bench: every benchmark, figures and ratios side by side.
// BENCH=start,create,core,moray,list,rollout,setup,backfill selects (and
// moray-getconfig, not run by default: GetConfig on the Moray test server
// beside the embedded store); BENCH_SECONDS
// sets the load duration of the GetConfig runs; BENCH_CREATE_SIZES (default
// 10000,50000,200000) and BENCH_CREATE_RUNS (default 2) the create runs.
// BENCH=moray runs SAPI 2.1.2's table on Moray (bench/moray.ts): against the
// real Moray at 127.0.0.1:$MORAY_PORT if set, else the Moray test server
// (indicative); BENCH_MORAY_INSTANCES (default 10000), BENCH_MORAY_CREATES
// (default 3000) and BENCH_MORAY_SECONDS (default 5, the 304 run) size it.
//
// One client for every SAPI figure (bench/lib.ts: HTTP/1.1 keep-alive,
// `Accept-Version: ~2`, in this process; the server in its own), the one
// the comparison with SAPI 2.1.2 used; each figure is printed beside 2.1.2's
// and beside the ceiling: the same client against a trivial Node HTTP
// server answering as many bytes (bench/ceiling.ts), measured in the same
// run. The machine is shared: the ratio to the ceiling is the figure that
// holds from one run to the next, more than the rate itself.

import { cpus, loadavg } from 'node:os';

import { benchBackfill } from './backfill.js';
import { benchUpgradeSearch } from './upgrade-search.js';
import { benchColdStart, SAPI_212_SECONDS } from './cold-start.js';
import { benchCreate } from './create.js';
import { benchCore } from './getconfig.js';
import { benchGetConfigMoray } from './getconfig-moray.js';
import { benchListInstances } from './list-instances.js';
import { benchMoray } from './moray.js';
import { benchRollout, benchSetupAgents } from './rollout.js';
import { fmt } from './lib.js';

const only = (process.env.BENCH ?? 'start,create,core,moray,list,rollout,setup,backfill').split(',');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const notes: string[] = [];

console.log(
    `machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg()
        .map((l) => fmt(l, 2))
        .join(' ')} at the start`,
);

if (only.includes('start')) {
    console.log('== start: node dist/bin/sapi.js to its first 200 on /ping (empty embedded store)');
    const s = await benchColdStart(Number(process.env.BENCH_START_RUNS ?? 5));
    notes.push(
        `cold start: median ${fmt(s.median * 1000, 0)} ms (best ${fmt(s.best * 1000, 0)} ms; server CPU ${fmt(s.cpuMedian * 1000, 0)} ms) | 2.1.2: ${fmt(SAPI_212_SECONDS * 1000, 0)} ms` +
            ` | ceiling (trivial node server): ${fmt(s.ceiling * 1000, 0)} ms`,
    );
}

if (only.includes('create')) {
    console.log('== create: CreateInstance c=16, fresh embedded store, proto mode (records only), 20 services (10 vm, 10 agent)');
    const sizes = (process.env.BENCH_CREATE_SIZES ?? '10000,50000,200000').split(',').map(Number);
    notes.push(...(await benchCreate(sizes, Number(process.env.BENCH_CREATE_RUNS ?? 2))));
}

if (only.includes('core')) {
    console.log('== core: GetConfig 200 and 304, c=32 (embedded store)');
    notes.push(...(await benchCore(seconds)));
}

if (only.includes('moray')) {
    console.log("== moray: SAPI 2.1.2's table on Moray (full mode, 20 services, 10,000 instances)");
    notes.push(
        ...(await benchMoray({
            instances: Number(process.env.BENCH_MORAY_INSTANCES ?? 10_000),
            creates: Number(process.env.BENCH_MORAY_CREATES ?? 3000),
            seconds: Number(process.env.BENCH_MORAY_SECONDS ?? 5),
        })),
    );
}

if (only.includes('moray-getconfig')) {
    console.log('== moray-getconfig: GetConfig 200 and 304, c=32, on the moray backend (Moray test server) beside the embedded store');
    await benchGetConfigMoray(Number(process.env.BENCH_MORAY_SECONDS ?? 5));
}

if (only.includes('list')) {
    console.log('== list-instances: 200,000 instances, 2,000 servers, 20 services, 10 images (embedded store)');
    await benchListInstances(Number(process.env.BENCH_INSTANCES ?? 200_000));
    // The Moray figures run against the in-memory fake Moray of test/lib (an
    // LDAP evaluator over indexes in this process, not PostgreSQL): they show
    // the backend path works at scale, not what a real Manatee would do.
    console.log('== list-instances on the moray backend (fake Moray)');
    await benchListInstances(Number(process.env.BENCH_MORAY_INSTANCES ?? 20_000), 'moray');
}
if (only.includes('rollout')) {
    console.log('== rollout: 1,000 servers, fake task 100 ms, concurrency 20');
    await benchRollout();
}
if (only.includes('setup')) {
    console.log('== setup: install_missing plan, 8 agents on 100 new servers (cn-agent only), fake task 100 ms, concurrency 20');
    await benchSetupAgents(Number(process.env.BENCH_SETUP_SERVERS ?? 100));
}
if (only.includes('backfill')) {
    console.log('== backfill: SAPI 2.1.2 instances on Moray get their index copies (fake Moray)');
    await benchBackfill(Number(process.env.BENCH_BACKFILL_INSTANCES ?? 10_000));
    console.log('== backfill through SAPI: the same upgrade with SAPI-TS in its own process, searched by server_uuid meanwhile (Moray test server)');
    await benchUpgradeSearch(Number(process.env.BENCH_BACKFILL_INSTANCES ?? 10_000));
}

if (notes.length > 0) {
    console.log('\n== summary (2.1.2 figures: measured beside SAPI-TS with this client on a 2-core machine shared by server and client)');
    for (const n of notes) {
        console.log(`  ${n}`);
    }
    console.log(
        `  load average at the end: ${loadavg()
            .map((l) => fmt(l, 2))
            .join(' ')} (other work on the machine lowers every figure, the ceiling's too)`,
    );
}
