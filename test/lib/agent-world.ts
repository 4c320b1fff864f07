// A full-mode SAPI wired to a fake CNAPI (whose "CNs" adopt agents into
// this SAPI during installs) and a fake IMGAPI, with an sdc application
// and agent services.

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
    close(): Promise<void>;
}

export async function agentWorld(
    opts: { agents?: string[]; taskDurationMs?: number; deploy?: Record<string, unknown>; log?: StartOpts['log'] } = {},
): Promise<AgentWorld> {
    const imgapi = await startFakeImgapi();
    const cnapi = await startFakeCnapi({
        taskDurationMs: opts.taskDurationMs ?? 30,
        imgapi: { url: imgapi.url },
        adoptDuringInstall: true,
        adoptIntervalMs: 20,
    });
    const h = await startSapi({
        config: {
            mode: 'full',
            cnapi: { url: cnapi.url },
            imgapi: { url: imgapi.url },
            deploy: { taskPollIntervalMs: 10, taskDeadlineMs: 3000, cnAgentTaskDeadlineMs: 3000, ...opts.deploy },
        },
        ...(opts.log ? { log: opts.log } : {}),
    });
    cnapi.sapiUrl = h.url;
    const app = (await anApplication(h)).uuid as string;
    const svc: AgentWorld['svc'] = {};
    let v = 0;
    const newImage = (name: string, version = `1.0.${++v}`): string => imgapi.addImage({ name, version }).uuid;
    for (const name of opts.agents ?? ['vm-agent', 'cn-agent', 'config-agent']) {
        const image = newImage(name);
        svc[name] = { uuid: (await aService(h, app, { name, type: 'agent', params: { image_uuid: image } })).uuid as string, image };
    }
    return {
        h,
        cnapi,
        imgapi,
        app,
        svc,
        newImage,
        close: async () => {
            await h.close();
            await cnapi.close();
            await imgapi.close();
        },
    };
}
