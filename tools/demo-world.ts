// A small, believable Triton DC to try SAPI-TS in: SAPI in full mode on
// the embedded store, wired to the project's fake CNAPI, IMGAPI and VMAPI
// (test/lib/, real HTTP servers on loopback). `npm run demo` starts it
// (tools/demo.ts) and the docs test runs the rollout and agent examples of
// docs/index.md against it.
//
// Everything in it has a fixed uuid (application, services, servers,
// images, instances, and the uuid a CN gives an agent it installs), so the
// same requests answer the same on every run; only what SAPI makes at run
// time (rollout uuids, task ids, times, durations) differs.
//
// The DC: an `sdc` application with five agent services and one vm service
// (napi); five compute nodes. The headnode and cn1–cn3 run their agents at
// an older version than the one IMGAPI now has (the services'
// params.image_uuid); cn3 is down; cn1's cn-agent never registered with
// SAPI (drift that `sapiadm check server-agents` finds and `exists: true`
// adopts); cn4 was just set up and has only an old cn-agent (2.7.0, too old
// to uninstall agents).

import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import bunyan from 'bunyan';

import { createApp, type SapiApp } from '../lib/app.js';
import type { CnapiAgent } from '../lib/clients/cnapi.js';
import { parseConfig } from '../lib/config.js';
import { createStore } from '../lib/stor/index.js';
import { startFakeCnapi, type FakeCnapi } from '../test/lib/fake-cnapi.js';
import { ADMIN_UUID, startFakeImgapi, type FakeImgapi } from '../test/lib/fake-imgapi.js';
import { startFakeVmapi, type FakeVmapi } from '../test/lib/fake-vmapi.js';

// ---- the DC

export const DEMO_APPLICATION = '5fa44c07-9e4b-4a52-b5b0-5a3e5e3c1a10';

/** Images in IMGAPI, by `name@version`. */
export const DEMO_IMAGES = {
    'cn-agent@2.7.0': 'ac80d876-af16-4ac0-adf9-0b4b793efc5d',
    'cn-agent@2.13.0': '4997131f-3327-400b-b5e7-04534c53cc57',
    'cn-agent@2.14.1': '9e8d7c6b-5a49-4382-a716-f5e4d3c2b1a0',
    'config-agent@1.10.2': '9c89234f-8b35-4be8-99ad-597e9143993b',
    'config-agent@1.11.0': '83398ba4-5cfc-49ca-bb15-1b9ce4e25444',
    'marlin-agent@1.4.0': 'd173f0b2-67e7-4ee4-a428-444ea70a23ba',
    'marlin-agent@1.5.0': '3c215da4-a71f-4047-813d-02476083d1cd',
    'net-agent@2.2.0': '06f8e6cf-0fc0-420b-abd5-1ddc0601f0e1',
    'net-agent@2.3.0': '22ddd9dd-8102-4e8e-8510-bab28b1c1410',
    'vm-agent@3.11.2': '0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d',
    'vm-agent@3.12.0': '7d2e3f40-5b6c-4d7e-9f80-1b2c3d4e5f60',
    'napi@20240501T000000Z': 'a2f0b0c4-6a5d-4e43-8a0b-3c1e9f6d2b55',
} as const;

type ImageKey = keyof typeof DEMO_IMAGES;

/** Agent services: uuid and the image new installs get (the newest). */
export const DEMO_AGENTS = {
    'cn-agent': { uuid: '800bb2f2-b515-4e62-ab42-bb5448ce698f', image: 'cn-agent@2.14.1' },
    'config-agent': { uuid: 'd7d8ce23-245b-462e-8ff2-13e98e4b9f65', image: 'config-agent@1.11.0' },
    'marlin-agent': { uuid: '5956778f-5808-4788-8dca-84fd98829ddb', image: 'marlin-agent@1.5.0' },
    'net-agent': { uuid: 'c741c957-a8c0-4e78-9a2e-bac6586d7a36', image: 'net-agent@2.3.0' },
    'vm-agent': { uuid: '3a7b5c1e-0f4d-4e2a-8b6c-9d1e2f3a4b5c', image: 'vm-agent@3.12.0' },
} as const satisfies Record<string, { uuid: string; image: ImageKey }>;

type AgentName = keyof typeof DEMO_AGENTS;

/** The vm service, its one instance and the zone VMAPI has for it. */
export const DEMO_NAPI = {
    service: '8d0e6c48-4a4f-4b2e-9d2f-2c6a1e0b7f31',
    instance: 'b1c9e3f0-7d2a-4c8e-9f31-6e0a5d4c3b22',
    image: 'napi@20240501T000000Z' as ImageKey,
} as const;

interface DemoAgent {
    image: ImageKey;
    /** The instance uuid (the CN's uuid file). */
    uuid: string;
    /** Recorded in SAPI (false: installed, but SAPI does not know it). */
    recorded?: false;
}

interface DemoServer {
    uuid: string;
    hostname: string;
    headnode?: true;
    status?: string;
    agents: Partial<Record<AgentName, DemoAgent>>;
}

export const DEMO_SERVERS: DemoServer[] = [
    {
        uuid: '44454c4c-3200-1042-8053-b2c04f565031',
        hostname: 'headnode',
        headnode: true,
        agents: {
            'cn-agent': { image: 'cn-agent@2.13.0', uuid: 'f5473114-3227-445d-bac8-657bd2743dbf' },
            'config-agent': { image: 'config-agent@1.10.2', uuid: 'e0f31407-05a1-4468-a208-9ffed5212c13' },
            'net-agent': { image: 'net-agent@2.2.0', uuid: 'aa5a24a1-2b21-4819-971b-c06c83583068' },
            'vm-agent': { image: 'vm-agent@3.11.2', uuid: 'a9613951-99b9-45ff-80e8-d8b5e98a301d' },
        },
    },
    {
        uuid: '564d8a2b-1f3e-4c9a-b7d6-2e8f0a1c3b5d',
        hostname: 'cn1',
        agents: {
            'cn-agent': { image: 'cn-agent@2.13.0', uuid: '6c8b05ea-3b13-43a0-ad4c-dbab3810da69', recorded: false },
            'config-agent': { image: 'config-agent@1.10.2', uuid: '644a71bc-ccd8-4c5d-8f6f-64ae593a0284' },
            'marlin-agent': { image: 'marlin-agent@1.4.0', uuid: 'c96f5783-c37b-48ab-9e9f-383ae0892153' },
            'net-agent': { image: 'net-agent@2.2.0', uuid: '3ae8113e-4db5-413f-b95c-5735fcf734ca' },
            'vm-agent': { image: 'vm-agent@3.11.2', uuid: 'a69b76ae-dae9-477f-aeec-a591dfff513e' },
        },
    },
    {
        uuid: '564d4f1c-e0f3-4ba6-9d62-7a1c0b9e8f13',
        hostname: 'cn2',
        agents: {
            'cn-agent': { image: 'cn-agent@2.13.0', uuid: 'e75ffe17-fcfc-4d68-9844-5ed7cd7d4a9a' },
            'config-agent': { image: 'config-agent@1.10.2', uuid: '24a68b7d-c05a-4b92-9047-c088acf9f3ca' },
            'marlin-agent': { image: 'marlin-agent@1.4.0', uuid: '1dd0baa3-d547-41e6-8bfc-acf215897ccd' },
            'net-agent': { image: 'net-agent@2.2.0', uuid: 'd8d21bcc-1c9c-4a5d-b83c-ff650a7c0004' },
            'vm-agent': { image: 'vm-agent@3.11.2', uuid: 'ed5d3203-1824-4d17-9fbb-615d69d11385' },
        },
    },
    {
        uuid: '564d71a9-c3e8-4f20-b5d4-0e9a2c6f1b87',
        hostname: 'cn3',
        status: 'unknown',
        agents: {
            'cn-agent': { image: 'cn-agent@2.13.0', uuid: 'f613e368-2328-458a-a433-2d8f6f93ef8c' },
            'config-agent': { image: 'config-agent@1.10.2', uuid: 'd1869f67-1a5c-4f97-944f-759e5c2445ea' },
            'marlin-agent': { image: 'marlin-agent@1.4.0', uuid: '80057746-dc2d-4934-8da8-cf6566ab7faf' },
            'net-agent': { image: 'net-agent@2.2.0', uuid: '429b50b7-5eca-41e0-be95-85da974c2342' },
            'vm-agent': { image: 'vm-agent@3.11.2', uuid: '384744b8-a781-44de-9f3b-5289fd9b2842' },
        },
    },
    {
        uuid: '564d2c90-7f1e-4a3b-9c5d-d8e2b4a6f013',
        hostname: 'cn4',
        agents: {
            'cn-agent': { image: 'cn-agent@2.7.0', uuid: 'c221662a-d3e6-4bb2-8097-8ee7bec2cbce' },
        },
    },
];

/** Every uuid the world is built with (what is not here was made at run time). */
export function demoFixedUuids(): Set<string> {
    const out = new Set<string>([DEMO_APPLICATION, ADMIN_UUID, DEMO_NAPI.service, DEMO_NAPI.instance, ...Object.values(DEMO_IMAGES)]);
    for (const a of Object.values(DEMO_AGENTS)) out.add(a.uuid);
    for (const s of DEMO_SERVERS) {
        out.add(s.uuid);
        for (const a of Object.values(s.agents)) out.add(a.uuid);
    }
    return out;
}

function imageName(key: ImageKey): { name: string; version: string } {
    const at = key.indexOf('@');
    return { name: key.slice(0, at), version: key.slice(at + 1) };
}

/**
 * The uuid a CN gives an agent it installs afresh: the same for the same
 * server, agent and install, so a fresh install answers the same every run.
 */
function agentUuidMaker(): (server: string, agent: string) => string {
    const seen = new Map<string, number>();
    return (server, agent) => {
        const key = `${server}/${agent}`;
        const n = (seen.get(key) ?? 0) + 1;
        seen.set(key, n);
        const h = createHash('sha1').update(`sapi-demo/${key}/${n}`).digest('hex');
        const variant = ((parseInt(h[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
        return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
    };
}

// ---- starting it

export interface DemoWorldOptions {
    /** SAPI's port (default 8080; 0: any free port). */
    port?: number;
    /** SAPI's address (default 127.0.0.1). */
    host?: string;
    /** Where the embedded store lives; default a fresh temporary directory, removed on close. */
    dataDir?: string;
    /** How long a CN takes for an agent install or uninstall (default 2000 ms). */
    taskDurationMs?: number;
    /** SAPI's logger; default bunyan at info into `<dataDir>/sapi.log`. */
    log?: bunyan;
}

export interface DemoWorld {
    /** SAPI, e.g. http://127.0.0.1:8080 */
    url: string;
    app: SapiApp;
    cnapi: FakeCnapi;
    imgapi: FakeImgapi;
    vmapi: FakeVmapi;
    dataDir: string;
    /** Where SAPI logs (undefined when the caller gave the logger). */
    logFile: string | undefined;
    /** False when `dataDir` already held the demo's SAPI data (the fakes always start afresh). */
    seeded: boolean;
    /** Resolves when no rollout runs and no CN task is queued. */
    idle(): Promise<void>;
    close(): Promise<void>;
}

export async function startDemoWorld(opts: DemoWorldOptions = {}): Promise<DemoWorld> {
    const fresh = opts.dataDir === undefined;
    const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'sapi-demo-'));
    const logFile = join(dataDir, 'sapi.log');
    const log = opts.log ?? bunyan.createLogger({ name: 'sapi', streams: [{ level: 'info', path: logFile }] });
    const closers: (() => Promise<void>)[] = [];
    const closeAll = async (): Promise<void> => {
        for (const c of closers.splice(0).reverse()) {
            await c().catch(() => undefined);
        }
        if (fresh) {
            rmSync(dataDir, { recursive: true, force: true });
        }
    };
    try {
        const imgapi = await startFakeImgapi({
            images: Object.entries(DEMO_IMAGES).map(([key, uuid]) => {
                const { name, version } = imageName(key as ImageKey);
                return key.startsWith('napi@') ? { uuid, name, version, type: 'zone-dataset', os: 'smartos' } : { uuid, name, version };
            }),
        });
        closers.push(() => imgapi.close());
        const headnode = DEMO_SERVERS.find((s) => s.headnode)?.uuid as string;
        const vmapi = await startFakeVmapi({
            defaultServerUuid: headnode,
            vms: [
                {
                    uuid: DEMO_NAPI.instance,
                    alias: 'napi0',
                    owner_uuid: ADMIN_UUID,
                    server_uuid: headnode,
                    image_uuid: DEMO_IMAGES[DEMO_NAPI.image],
                    tags: { smartdc_role: 'napi', smartdc_type: 'core' },
                },
            ],
        });
        closers.push(() => vmapi.close());
        const cnapi = await startFakeCnapi({
            taskDurationMs: opts.taskDurationMs ?? 2000,
            imgapi: { url: imgapi.url },
            adoptDuringInstall: true,
            cnAgentUpdateDelayMs: 300,
            newAgentUuid: agentUuidMaker(),
            servers: DEMO_SERVERS.map((s) => ({
                uuid: s.uuid,
                hostname: s.hostname,
                headnode: s.headnode === true,
                ...(s.status ? { status: s.status } : {}),
                agents: Object.entries(s.agents).map(([name, a]): CnapiAgent => {
                    const { version } = imageName(a.image);
                    return { name, version, image_uuid: DEMO_IMAGES[a.image], uuid: a.uuid };
                }),
            })),
        });
        closers.push(() => cnapi.close());

        const config = parseConfig({
            port: opts.port ?? 8080,
            host: opts.host ?? '127.0.0.1',
            mode: 'full',
            store: { backend: 'sqlite', path: join(dataDir, 'sapi.sqlite') },
            cnapi: { url: cnapi.url },
            imgapi: { url: imgapi.url },
            vmapi: { url: vmapi.url },
            deploy: { taskPollIntervalMs: 100, jobPollIntervalMs: 100 },
        });
        const setup = await createStore(config, log);
        let app: SapiApp;
        try {
            app = await createApp({ config, log, store: setup.store, setup });
        } catch (err) {
            await setup.close();
            throw err;
        }
        closers.push(() => app.close());
        const port = await app.listen();
        const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
        // The CNs' agents register themselves here as they are installed.
        cnapi.sapiUrl = url;
        const seeded = await seed(url);
        return {
            url,
            app,
            cnapi,
            imgapi,
            vmapi,
            dataDir,
            logFile: opts.log ? undefined : logFile,
            seeded,
            idle: async () => {
                await app.rollouts.idle();
                await cnapi.idle();
            },
            close: closeAll,
        };
    } catch (err) {
        await closeAll();
        throw err;
    }
}

/** Records the DC in SAPI through its API, unless the store already holds it. */
async function seed(url: string): Promise<boolean> {
    const call = async (method: string, path: string, body?: unknown): Promise<unknown> => {
        const res = await fetch(url + path, {
            method,
            headers: { 'content-type': 'application/json' },
            ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        const text = await res.text();
        if (res.status >= 300) {
            throw new Error(`demo world: ${method} ${path}: ${res.status} ${text}`);
        }
        return text ? JSON.parse(text) : undefined;
    };
    const apps = (await call('GET', `/applications?name=sdc`)) as unknown[];
    if (apps.length > 0) {
        return false;
    }
    await call('POST', '/applications', {
        uuid: DEMO_APPLICATION,
        name: 'sdc',
        owner_uuid: ADMIN_UUID,
        params: { networks: ['admin'] },
        metadata: { datacenter_name: 'coal', dns_domain: 'coal.example.com' },
    });
    for (const [name, svc] of Object.entries(DEMO_AGENTS)) {
        await call('POST', '/services', {
            uuid: svc.uuid,
            name,
            application_uuid: DEMO_APPLICATION,
            type: 'agent',
            params: { image_uuid: DEMO_IMAGES[svc.image] },
        });
    }
    await call('POST', '/services', {
        uuid: DEMO_NAPI.service,
        name: 'napi',
        application_uuid: DEMO_APPLICATION,
        type: 'vm',
        params: { image_uuid: DEMO_IMAGES[DEMO_NAPI.image], ram: 1024 },
        metadata: { SERVICE_NAME: 'napi.coal.example.com' },
    });
    // What each agent's postinstall recorded (a v1 create records only).
    for (const server of DEMO_SERVERS) {
        for (const [name, agent] of Object.entries(server.agents)) {
            if (agent.recorded === false) {
                continue;
            }
            await call('POST', '/instances', {
                uuid: agent.uuid,
                service_uuid: DEMO_AGENTS[name as AgentName].uuid,
                params: { server_uuid: server.uuid, image_uuid: DEMO_IMAGES[agent.image] },
            });
        }
    }
    // The napi zone VMAPI already has: recorded, not provisioned again.
    await call('POST', '/instances', { uuid: DEMO_NAPI.instance, service_uuid: DEMO_NAPI.service, params: { alias: 'napi0' } });
    return true;
}
