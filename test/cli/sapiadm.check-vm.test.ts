// sapiadm check vm-instances against a full-mode SAPI and the fake VMAPI:
// each kind of drift is reported (exit 3), --fix without --yes is refused
// off a terminal (exit 2) and a "n" at a terminal's prompt changes
// nothing, --fix --yes forgets the records of destroyed and missing VMs,
// adopts the unknown core VM and records the image each VM runs (then the
// check is clean, exit 0), and VMAPI never gets a provision, a reprovision or
// a destroy of a VM that exists.

import { randomUUID } from 'node:crypto';

import t from 'tap';

import { aService, OWNER } from '../lib/fixtures.js';
import { exits, sapiadm, sapiadmAtTerminal } from '../lib/sapiadm.js';
import { startVmEnv } from '../lib/vm-env.js';

t.test('vm drift: report, decline, --fix --yes, clean', async (t) => {
    const env = await startVmEnv(t);
    const { h, vmapi } = env;
    const SAPI = env.svc as { uuid: string; name: string };
    const cnapiSvc = await aService(h, env.app.uuid, { name: 'cnapi', params: { image_uuid: env.image } });
    const OTHER_IMAGE = randomUUID();
    const core = (role: string, extra: Record<string, unknown> = {}): string =>
        vmapi.addVm({ owner_uuid: OWNER, image_uuid: env.image, tags: { smartdc_role: role }, alias: `${role}0`, ...extra }).uuid;

    // SAPI knows five VMs (adopted: nothing provisioned).
    const ok = core('sapi');
    const destroyed = core('sapi');
    const missing = core('cnapi');
    const stale = core('cnapi');
    for (const [svc, uuid] of [
        [SAPI.uuid, ok],
        [SAPI.uuid, destroyed],
        [cnapiSvc.uuid, missing],
        [cnapiSvc.uuid, stale],
    ] as const) {
        const r = await h.call('POST', '/instances', { body: { service_uuid: svc, uuid, exists: true }, version: '~2' });
        t.equal(r.status, 200, 'adopted', { body: r.text });
    }
    // Then: one VM destroyed, one gone from VMAPI, one reprovisioned behind SAPI's back.
    (vmapi.state.vms.get(destroyed) as { state: string }).state = 'destroyed';
    vmapi.state.vms.delete(missing);
    (vmapi.state.vms.get(stale) as { image_uuid: string }).image_uuid = OTHER_IMAGE;
    // A core VM SAPI does not know; VMs that are not core VMs are left alone.
    const unknown = core('sapi', { alias: 'sapi1' });
    core('manatee'); // no such SAPI service
    core('sapi', { owner_uuid: randomUUID() }); // another user's VM
    core('sapi', { state: 'destroyed' });
    vmapi.addVm({ owner_uuid: OWNER, image_uuid: env.image }); // no role
    vmapi.requests.length = 0;

    const opts = { url: h.url, env: { VMAPI_URL: vmapi.url } };
    const [text, json, declined, noVmapi] = await Promise.all([
        sapiadm(['check', 'vm-instances'], opts),
        sapiadm(['--json', 'check', 'vm-instances'], opts),
        sapiadm(['check', 'vm-instances', '--fix'], { ...opts, stdin: 'y\n' }),
        sapiadm(['check', 'vm-instances'], { url: h.url }),
    ]);

    exits(t, noVmapi, 2, 'VMAPI is needed');
    t.match(noVmapi.stderr, 'give --vmapi-url URL or set VMAPI_URL');

    exits(t, text, 3, 'drift');
    t.match(text.stdout, new RegExp(`VM destroyed +sapi instance ${destroyed}: the VM is destroyed`));
    t.match(text.stdout, new RegExp(`VM missing +cnapi instance ${missing}: VMAPI has no such VM`));
    t.match(text.stdout, new RegExp(`image mismatch +cnapi instance ${stale}: params.image_uuid is ${env.image}, the VM runs ${OTHER_IMAGE}`));
    t.match(text.stdout, new RegExp(`unknown to SAPI +VM ${unknown} \\(sapi1\\), role sapi: no SAPI instance`));
    t.match(text.stdout, /4 issues \(4 vm instances, 3 core VMs, owner [0-9a-f-]{36}; 4 fixable with --fix\)\./);
    t.match(text.stdout, 'Run `sapiadm check vm-instances --fix`');

    exits(t, json, 3);
    const kinds = (json.json.report.findings as { kind: string; vm: string }[]).map((f) => [f.kind, f.vm]).sort();
    t.same(
        kinds,
        [
            ['image-mismatch', stale],
            ['unknown-vm', unknown],
            ['vm-destroyed', destroyed],
            ['vm-missing', missing],
        ].sort(),
        'exactly the four drifts, nothing about the VMs that are not core VMs',
    );
    t.same(json.json.report.owners, [OWNER], "the admin user: the applications' owner");

    // stdin a pipe, not a terminal: no one to ask, so no answer is read from it.
    exits(t, declined, 2, '--fix without --yes off a terminal');
    t.match(declined.stderr, /^sapiadm: refusing to change 4 SAPI records without --yes \(not a terminal\)$/m);
    t.equal((await h.call('GET', '/instances?type=vm', { version: '~2' })).body.length, 4, 'SAPI untouched');
    const no = await sapiadmAtTerminal(['check', 'vm-instances', '--fix'], { url: h.url, env: { VMAPI_URL: vmapi.url }, answer: 'n' });
    t.ok(no.asked, 'asked on a terminal');
    t.equal(no.code, 3, 'not answered y: the drift remains');
    t.match(no.stderr, /\[y\/N\] Nothing changed\./);
    t.equal((await h.call('GET', '/instances?type=vm', { version: '~2' })).body.length, 4, 'SAPI untouched');

    const fixed = await sapiadm(['check', 'vm-instances', '--fix', '--yes'], opts);
    exits(t, fixed, 0, 'fixed');
    t.match(fixed.stdout, `forgot sapi instance ${destroyed} (VM destroyed)`);
    t.match(fixed.stdout, `forgot cnapi instance ${missing} (no such VM)`);
    t.match(fixed.stdout, `adopted VM ${unknown} as a sapi instance (record only)`);
    t.match(fixed.stdout, `set params.image_uuid of instance ${stale} to ${OTHER_IMAGE}`);
    t.match(fixed.stdout, /Fixed: 4 changes; SAPI and VMAPI agree now\./);

    const records = (await h.call('GET', '/instances?type=vm', { version: '~2' })).body as { uuid: string; params: Record<string, string> }[];
    t.same(records.map((r) => r.uuid).sort(), [ok, stale, unknown].sort(), 'the records of the gone VMs went, the unknown VM is recorded');
    const adopted = records.find((r) => r.uuid === unknown);
    t.match(adopted?.params, { image_uuid: env.image, server_uuid: env.server, alias: 'sapi1' }, "the adopted record has the VM's image, server, alias");
    t.equal(records.find((r) => r.uuid === stale)?.params.image_uuid, OTHER_IMAGE);

    // VMAPI: lists and reads; a DELETE reached it only for VMs already gone (SAPI's full-mode delete), and no job ran.
    const writes = vmapi.requests.filter((r) => r.method !== 'GET');
    t.same(writes.map((r) => `${r.method} ${r.path}`).sort(), [`DELETE /vms/${destroyed}`, `DELETE /vms/${missing}`].sort(), 'no provision or reprovision');
    t.equal(vmapi.state.jobs.size, 0, 'no VMAPI job: nothing provisioned or destroyed');
    t.equal(vmapi.state.vms.get(ok)?.state, 'running');
    t.equal(vmapi.state.vms.get(unknown)?.state, 'running');
    t.ok(
        vmapi.requests.some((r) => r.method === 'GET' && r.path === '/vms' && r.query.owner_uuid === OWNER && r.query.state === 'active'),
        'core VMs listed by owner and state',
    );

    const clean = await sapiadm(['check', 'vm-instances'], opts);
    exits(t, clean, 0, 'clean');
    t.match(clean.stdout, /^OK: 3 vm instances and 3 core VMs \(owner [0-9a-f-]{36}\) agree\./m);
});
