// A full-mode SAPI wired to a fake CNAPI (whose "CNs" adopt agents into
// this SAPI during installs) and a fake IMGAPI, with an sdc application
// and agent services; it can be restarted on its data directory. Also the
// helpers rollout tests share: servers with a vm-agent, waiting on a rollout.

import { startFakeCnapi, type FakeCnapi } from './fake-cnapi.js';
import { startFakeImgapi, type FakeImgapi } from './fake-imgapi.js';
import { anApplication, aService } from './fixtures.js';
import { startSapi, type Harness, type StartOpts } from './harness.js';

export interface AgentWorld {
    h: Harness;
    cnapi: FakeCnapi;
    imgapi: FakeImgapi;
    app: string;
    /** service name → {uuid, image} */
    svc: Record<string, { uuid: string; image: string }>;
    newImage(name: string, version?: string): string;
    /**
     * Stops the SAPI and starts another on its data directory (with
     * keepDir); `whileDown` runs in between. `h` is the new one, and the
     * fake CNAPI's agents report to it.
     */
    restart(whileDown?: () => Promise<void>): Promise<Harness>;
    close(): Promise<void>;
}

export async function agentWorld(
    opts: {
        agents?: string[];
        taskDurationMs?: number;
        deploy?: Record<string, unknown>;
        log?: StartOpts['log'];
        keepDir?: boolean;
        /** A CNAPI with POST /servers/:uuid/refresh-agents (a future one; default: none has it). */
        refreshAgents?: boolean;
    } = {},
): Promise<AgentWorld> {
    const imgapi = await startFakeImgapi();
    const cnapi = await startFakeCnapi({
        taskDurationMs: opts.taskDurationMs ?? 30,
        imgapi: { url: imgapi.url },
        adoptDuringInstall: true,
        adoptIntervalMs: 20,
        ...(opts.refreshAgents ? { refreshAgents: true } : {}),
    });
    const config = {
        mode: 'full',
        cnapi: { url: cnapi.url },
        imgapi: { url: imgapi.url },
        deploy: { taskPollIntervalMs: 10, taskDeadlineMs: 3000, cnAgentTaskDeadlineMs: 3000, ...opts.deploy },
    };
    const more = { ...(opts.log ? { log: opts.log } : {}), ...(opts.keepDir ? { keepDir: true } : {}) };
    const h = await startSapi({ config, ...more });
    cnapi.sapiUrl = h.url;
    const app = (await anApplication(h)).uuid as string;
    const svc: AgentWorld['svc'] = {};
    let v = 0;
    const newImage = (name: string, version = `1.0.${++v}`): string => imgapi.addImage({ name, version }).uuid;
    for (const name of opts.agents ?? ['vm-agent', 'cn-agent', 'config-agent']) {
        const image = newImage(name);
        svc[name] = { uuid: (await aService(h, app, { name, type: 'agent', params: { image_uuid: image } })).uuid as string, image };
    }
    const world: AgentWorld = {
        h,
        cnapi,
        imgapi,
        app,
        svc,
        newImage,
        restart: async (whileDown) => {
            const dir = world.h.dir;
            await world.h.close();
            await whileDown?.();
            world.h = await startSapi({ config, dir, ...more });
            cnapi.sapiUrl = world.h.url;
            return world.h;
        },
        close: async () => {
            await world.h.close();
            await cnapi.close();
            await imgapi.close();
        },
    };
    return world;
}

/** `n` new servers, each with a vm-agent installed through SAPI. */
export async function vmAgentServers(w: AgentWorld, n: number): Promise<string[]> {
    const servers: string[] = [];
    for (let i = 0; i < n; i++) {
        const s = w.cnapi.addServer().uuid;
        const r = await w.h.call('POST', '/instances', { body: { service_uuid: w.svc['vm-agent']?.uuid, params: { server_uuid: s } }, version: '~2' });
        if (r.status !== 200) throw new Error(r.text);
        servers.push(s);
    }
    return servers;
}

/** GET /rollouts/:uuid until `cond` holds (tap's timeout bounds the wait); an answer other than 200 throws. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function rolloutWhen(h: Harness, uuid: string, cond: (body: any) => boolean): Promise<any> {
    for (;;) {
        const r = await h.call('GET', `/rollouts/${uuid}`, { version: '~2' });
        if (r.status !== 200) throw new Error(r.text);
        if (cond(r.body)) return r.body;
        await new Promise((res) => setTimeout(res, 20));
    }
}
