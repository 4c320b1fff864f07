// The agent deployer: CNAPI → cn-agent installs, upgrades and uninstalls
// agents. SAPI is the intent; CNAPI server.agents
// the cache of what is installed. Agents adopt themselves into SAPI during
// their install (model/instances.ts adoptAgent); this deployer never
// pre-creates a record and reconciles with server.agents afterwards.

import type { CnapiAgent, CnapiClient, CnapiServer, PollOptions } from '../clients/cnapi.js';
import { isDownstreamStatus } from '../clients/http.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import {
    inContext,
    instanceExists,
    invalidArgument,
    notFound,
    serverNotRunning,
    serverNotSetup,
    serverPreconditionFailed,
    step,
    unsupportedOperation,
} from '../errors.js';
import type { SapiConfig } from '../config.js';
import type Logger from 'bunyan';
import type { Dict, Instance, Service } from '../model/types.js';
import type { CreateResult, DeployReq, Deployer, InstancePlan, InstanceRecords } from '../model/deployer.js';
import { ServerLocks } from './server-locks.js';

export interface AgentDeployerOptions {
    /** Task polling intervals and deadlines. */
    deploy: SapiConfig['deploy'];
    log: Logger;
    records: InstanceRecords;
    cnapi: CnapiClient;
    imgapi: ImgapiClient;
    locks?: ServerLocks;
}

/**
 * The agent whose own update restarts the task runner: cn-agent hands its
 * install to cn-agent-update, so the CNAPI task ends before the new cn-agent runs.
 */
const SELF_UPDATING = 'cn-agent';

export class AgentDeployer implements Deployer {
    readonly type = 'agent' as const;
    readonly locks: ServerLocks;
    private readonly deploy: SapiConfig['deploy'];
    private readonly log: Logger;
    private readonly records: InstanceRecords;
    private readonly cnapi: CnapiClient;
    private readonly imgapi: ImgapiClient;

    constructor(opts: AgentDeployerOptions) {
        this.deploy = opts.deploy;
        this.log = opts.log;
        this.records = opts.records;
        this.cnapi = opts.cnapi;
        this.imgapi = opts.imgapi;
        this.locks = opts.locks ?? new ServerLocks(undefined, opts.log);
    }

    // ---- Deployer

    async create(req: DeployReq, plan: InstancePlan): Promise<CreateResult> {
        const { server, image, name } = target(plan);
        const existing = await this.records.findOnServer(plan.service.uuid, server);
        const current = existing[0];
        if (current) {
            // One instance per (service, server): no second install.
            const has = current.params?.image_uuid;
            if (has !== undefined && has !== image) {
                throw instanceExists(
                    `server ${server} already has ${name} instance ${current.uuid} at image ${has as string}; use UpgradeInstance to move it to ${image}`,
                );
            }
            return { instance: current };
        }
        if (!req.serverChecked) {
            await this.checkServer(req, server, `install ${name}`);
        }
        if (!req.imageChecked) {
            await this.checkAgentImage(req, image, name);
        }
        return this.installImage(req, plan, 'install', image, {
            record: () => this.reconcile(plan, server, image, name),
            undo: () => this.undoAdoption(req, plan, server),
        });
    }

    async adopt(req: DeployReq, plan: InstancePlan): Promise<Instance> {
        const { server, name } = target(plan);
        const srv = await this.getServer(req, server);
        if (!srv) {
            throw notFound(`server ${server} not found in CNAPI`);
        }
        const entry = agentEntry(srv, name);
        if (!entry) {
            throw invalidArgument(`agent ${name} is not installed on server ${server} (CNAPI server.agents)`);
        }
        if (entry.uuid && entry.uuid !== plan.instance.uuid) {
            throw invalidArgument(`server ${server} reports ${name} instance ${entry.uuid}, not ${plan.instance.uuid}`);
        }
        const params: Dict = { ...plan.instance.params, server_uuid: server };
        if (entry.image_uuid) {
            params.image_uuid = entry.image_uuid;
        }
        return this.records.adoptAgent({ ...plan.instance, params });
    }

    async upgrade(req: DeployReq, plan: InstancePlan, imageUuid: string): Promise<CreateResult> {
        const { server, name } = target(plan);
        if (!req.serverChecked) {
            await this.checkServer(req, server, `upgrade ${name}`);
        }
        if (!req.imageChecked) {
            await this.checkAgentImage(req, imageUuid, name);
        }
        return this.installImage(req, plan, 'upgrade', imageUuid, {
            record: () => this.recordUpgrade(plan, server, imageUuid),
        });
    }

    async destroy(req: DeployReq, plan: InstancePlan): Promise<void> {
        const { server, name } = target(plan);
        if (name === SELF_UPDATING) {
            throw unsupportedOperation(`${SELF_UPDATING} is never uninstalled through SAPI (server ${server})`);
        }
        const srv = await this.getServer(req, server);
        if (!srv || srv.setup === false || !agentEntry(srv, name)) {
            // Server gone or wiped, or the agent already absent: the record goes.
            req.log.info({ server, agent: name, serverKnown: Boolean(srv) }, 'agent not installed: removing the record only');
            await this.records.remove(plan.instance.uuid);
            return;
        }
        if (srv.status !== 'running') {
            throw serverNotRunning(
                `server ${server} is not running (status: ${String(srv.status)}); cannot uninstall ${name}` +
                    `; DELETE /servers/${server}/instances forgets its agent records without uninstalling`,
            );
        }
        const release = await this.locks.acquire(server, `uninstall of ${name}`);
        try {
            let task: { id: string };
            try {
                task = await this.cnapi.uninstallAgents(server, [name], { reqId: req.reqId });
            } catch (err) {
                if (isDownstreamStatus(err, 412)) {
                    throw serverPreconditionFailed(`cannot uninstall ${name} on server ${server}: ${err.message}`);
                }
                throw inContext(err, `uninstall of ${name} on server ${server}`);
            }
            await step(`uninstall of ${name} on server ${server} (task ${task.id})`, () => this.cnapi.pollTask(task.id, this.pollOpts(req, server, false)));
            await this.records.remove(plan.instance.uuid);
        } finally {
            release();
        }
    }

    // ---- steps

    /**
     * Install (or upgrade to) `image` on the plan's server under the
     * server's lock: POST install-agent, wait for it (waitInstalled), then `record`;
     * on failure `undo`. Async: answers at once with the CNAPI task id and
     * finishes in the background (the lock is held until then).
     */
    private async installImage(
        req: DeployReq,
        plan: InstancePlan,
        verb: 'install' | 'upgrade',
        image: string,
        then: { record: () => Promise<Instance>; undo?: () => Promise<void> },
    ): Promise<CreateResult> {
        const { server, name } = target(plan);
        const release = await this.locks.acquire(server, `${verb} of ${name} to image ${image}`);
        try {
            const task = await step(`${verb} of ${name} on server ${server}`, () => this.cnapi.installAgent(server, image, { reqId: req.reqId }));
            req.log.info({ server, agent: name, image, task: task.id }, `agent ${verb} started`);
            const finish = async (): Promise<Instance> => {
                try {
                    await this.waitInstalled(req, task.id, server, name, image);
                    return await then.record();
                } catch (err) {
                    await then.undo?.();
                    throw err;
                } finally {
                    release();
                }
            };
            if (req.async) {
                finish().then(
                    (inst) => req.log.info({ task: task.id, uuid: inst.uuid }, `async agent ${verb} done`),
                    (err: unknown) => req.log.error({ err, task: task.id, server }, `async agent ${verb} failed`),
                );
                return { instance: plan.instance, job_uuid: task.id };
            }
            return { instance: await finish() };
        } catch (err) {
            release();
            throw err;
        }
    }

    /** Before an install: the server must exist in CNAPI (else 404), be set up and running (else 409). */
    private async checkServer(req: DeployReq, server: string, what: string): Promise<CnapiServer> {
        const srv = await this.getServer(req, server);
        if (!srv) {
            throw notFound(`server ${server} not found in CNAPI`);
        }
        if (srv.setup !== true) {
            throw serverNotSetup(`server ${server} is not set up; cannot ${what}`);
        }
        if (srv.status !== 'running') {
            throw serverNotRunning(`server ${server} is not running (status: ${String(srv.status)}); cannot ${what}`);
        }
        return srv;
    }

    async checkServers(req: DeployReq, servers: string[]): Promise<Map<string, string>> {
        const found = await step(`listing ${servers.length} servers in CNAPI`, () =>
            // Any extras adds `status` (CNAPI ListServers); agents is the cheapest useful one.
            this.cnapi.listServers({ uuids: servers, extras: ['agents'], reqId: req.reqId }),
        );
        const byUuid = new Map(found.map((s) => [s.uuid, s]));
        const out = new Map<string, string>();
        for (const uuid of servers) {
            const s = byUuid.get(uuid);
            if (!s) {
                out.set(uuid, `server ${uuid} not found in CNAPI`);
            } else if (s.setup !== true) {
                out.set(uuid, `server ${uuid} is not set up`);
            } else if (s.status !== 'running') {
                out.set(uuid, `server ${uuid} is not running (status: ${String(s.status)})`);
            }
        }
        return out;
    }

    checkImage(req: DeployReq, imageUuid: string, service: Service): Promise<void> {
        return this.checkAgentImage(req, imageUuid, service.name);
    }

    /** The image must be in the local IMGAPI, active, and named like the service. */
    private async checkAgentImage(req: DeployReq, image: string, name: string): Promise<void> {
        const img = await step(`image ${image} lookup in IMGAPI`, () => this.imgapi.getImage(image, { reqId: req.reqId }));
        if (!img) {
            throw invalidArgument(`image ${image} not found in the local IMGAPI`);
        }
        if (img.state !== 'active') {
            throw invalidArgument(`image ${image} is not active (state: ${String(img.state)})`);
        }
        if (img.name !== name) {
            throw invalidArgument(`image ${image} is "${String(img.name)}", not an image of agent ${name}`);
        }
    }

    private async getServer(req: DeployReq, server: string): Promise<CnapiServer | null> {
        try {
            return await this.cnapi.getServer(server, { reqId: req.reqId });
        } catch (err) {
            if (isDownstreamStatus(err, 404)) {
                return null;
            }
            throw inContext(err, `reading server ${server} from CNAPI`);
        }
    }

    private pollOpts(req: DeployReq, server: string, cnAgent: boolean): PollOptions & { intervalMs: number; deadlineMs: number } {
        const d = this.deploy;
        return {
            intervalMs: d.taskPollIntervalMs,
            deadlineMs: cnAgent ? d.cnAgentTaskDeadlineMs : d.taskDeadlineMs,
            server,
            reqId: req.reqId,
            ...(req.signal ? { signal: req.signal } : {}),
        };
    }

    /**
     * Poll the task; for cn-agent, whose task ends before the new cn-agent
     * runs, watch server.agents until it reports the new image instead.
     */
    private async waitInstalled(req: DeployReq, taskId: string, server: string, name: string, image: string): Promise<void> {
        if (name !== SELF_UPDATING) {
            await this.cnapi.pollTask(taskId, this.pollOpts(req, server, false));
            return;
        }
        const opts = this.pollOpts(req, server, true);
        try {
            await this.cnapi.pollTask(taskId, opts);
        } catch (err) {
            if (req.signal?.aborted) {
                throw err;
            }
            // The hand-off to cn-agent-update often ends the task in error;
            // server.agents is the truth for cn-agent.
            req.log.warn({ err, task: taskId, server }, 'cn-agent task did not complete cleanly; watching server.agents');
        }
        const { intervalMs, deadlineMs, reqId, signal } = opts;
        await this.cnapi.waitForAgentImage(server, name, image, { intervalMs, deadlineMs, reqId, ...(signal ? { signal } : {}) });
    }

    /**
     * After the task: exactly one instance for (service, server), with
     * the uuid the node reports in server.agents (the node's uuid wins).
     */
    private async reconcile(plan: InstancePlan, server: string, image: string, name: string): Promise<Instance> {
        let entry: CnapiAgent | undefined;
        try {
            entry = agentEntry(await this.cnapi.getServer(server), name);
        } catch (err) {
            this.log.warn({ err, server }, 'could not read server.agents after install; keeping SAPI records');
        }
        const adopted = await this.records.findOnServer(plan.service.uuid, server);
        const uuid = entry?.uuid ?? adopted[0]?.uuid ?? plan.instance.uuid;
        const base = adopted.find((i) => i.uuid === uuid) ?? plan.instance;
        return this.records.adoptAgent({
            ...plan.instance,
            uuid,
            params: { ...base.params, ...plan.instance.params, server_uuid: server, image_uuid: image },
        });
    }

    /**
     * A failed install leaves the records as they were: the server had no
     * instance of the service before, so drop what the agent's postinstall
     * adopted before the task failed.
     */
    private async undoAdoption(req: DeployReq, plan: InstancePlan, server: string): Promise<void> {
        try {
            for (const inst of await this.records.findOnServer(plan.service.uuid, server)) {
                await this.records.remove(inst.uuid);
                req.log.warn({ uuid: inst.uuid, server }, 'removed an instance adopted during a failed install');
            }
        } catch (err) {
            req.log.error({ err, server }, 'could not clean up after a failed install');
        }
    }

    private async recordUpgrade(plan: InstancePlan, server: string, image: string): Promise<Instance> {
        if (await this.records.get(plan.instance.uuid)) {
            return this.records.setImage(plan.instance.uuid, image);
        }
        // The node re-adopted under another uuid meanwhile: keep that one.
        const now = await this.records.findOnServer(plan.service.uuid, server);
        const cur = now[0];
        return cur
            ? this.records.setImage(cur.uuid, image)
            : this.records.adoptAgent({ ...plan.instance, params: { ...plan.instance.params, image_uuid: image } });
    }
}

function target(plan: InstancePlan): { server: string; image: string; name: string } {
    const p = plan.instance.params ?? {};
    return { server: String(p.server_uuid), image: String(p.image_uuid), name: plan.service.name };
}

function agentEntry(srv: CnapiServer, name: string): CnapiAgent | undefined {
    return (srv.agents ?? []).find((a) => a.name === name);
}
