// npm run bench: every benchmark, figures and ratios side by side.
// BENCH=start,core,list selects; BENCH_SECONDS sets the load duration.

import { benchBackfill } from './backfill.js';
import { benchColdStart } from './cold-start.js';
import { benchCore } from './getconfig.js';
import { benchListInstances } from './list-instances.js';
import { benchRollout } from './rollout.js';

const only = (process.env.BENCH ?? 'start,core,list,rollout,backfill').split(',');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);

if (only.includes('start')) {
    console.log('== start: node dist/bin/sapi.js to its first answer (embedded store)');
    await benchColdStart(Number(process.env.BENCH_START_RUNS ?? 5));
}

if (only.includes('core')) {
    console.log('== core: GetConfig and CreateInstance (embedded store)');
    await benchCore(seconds);
}
if (only.includes('list')) {
    console.log('== list-instances: 200,000 instances, 2,000 servers, 20 services, 10 images (embedded store)');
    await benchListInstances(Number(process.env.BENCH_INSTANCES ?? 200_000));
    // The Moray figures run against the in-memory fake Moray of test/lib (a
    // scan-based LDAP evaluator in this process, not PostgreSQL): they show
    // the backend path works at scale, not what a real Manatee would do.
    console.log('== list-instances on the moray backend (fake Moray)');
    await benchListInstances(Number(process.env.BENCH_MORAY_INSTANCES ?? 20_000), 'moray');
}
if (only.includes('rollout')) {
    console.log('== rollout: 1,000 servers, fake task 100 ms, concurrency 20');
    await benchRollout();
}
if (only.includes('backfill')) {
    console.log('== backfill: SAPI 2.1.2 instances on Moray get their index copies (fake Moray)');
    await benchBackfill(Number(process.env.BENCH_BACKFILL_INSTANCES ?? 10_000));
}
