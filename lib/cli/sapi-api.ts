// sapiadm's SAPI client: the REST API with `Accept-Version: ~2` (the view
// that shows `type` and drives CNAPI/VMAPI in full mode), plus a v1 client
// (no Accept-Version) for record-only agent calls, as an agent's own
// postinstall makes them (a v1 request on an agent only records, never deploys).

import { JsonClient, type QueryValue } from '../clients/http.js';
import type { Application, Dict, Instance, Manifest, Service } from '../model/types.js';
import type { Rollout } from '../rollout/types.js';
import { isUuid } from './args.js';
import { CliError } from './errors.js';

const USER_AGENT = 'sapiadm/3.0.0';
const PAGE = 1000;
/** Creating, upgrading or deleting a deployed instance can take a while. */
const DEPLOY_TIMEOUT_MS = 60 * 60 * 1000;
/** A search the server answers by scanning every record. */
const SCAN_TIMEOUT_MS = 10 * 60 * 1000;

export type Query = Record<string, QueryValue>;

export class SapiApi {
    readonly url: string;
    /** Accept-Version: ~2. */
    readonly http: JsonClient;
    /** No Accept-Version: the v1 view, record-only for agents. */
    readonly v1: JsonClient;

    constructor(url: string) {
        this.url = url;
        this.http = new JsonClient({ url, service: 'SAPI', userAgent: USER_AGENT, headers: { 'accept-version': '~2' } });
        this.v1 = new JsonClient({ url, service: 'SAPI', userAgent: USER_AGENT });
    }

    close(): void {
        this.http.close();
        this.v1.close();
    }

    /** Every item of a list route, paged with limit + marker (uuid order). */
    async listAll<T extends { uuid: string }>(path: string, query: Query = {}): Promise<T[]> {
        const all: T[] = [];
        let marker: string | undefined;
        for (;;) {
            const res = await this.http.get<T[]>(path, { query: { ...query, limit: PAGE, marker } });
            const page = Array.isArray(res.body) ? res.body : [];
            all.push(...page);
            const last = page[page.length - 1];
            if (page.length < PAGE || !last) {
                return all;
            }
            marker = last.uuid;
        }
    }

    async get<T>(path: string): Promise<T> {
        return (await this.http.get<T>(path)).body;
    }

    async post<T>(path: string, body: unknown, opts: { v1?: boolean; query?: Query } = {}): Promise<T> {
        const client = opts.v1 ? this.v1 : this.http;
        const o = opts.query ? { body, query: opts.query, timeoutMs: DEPLOY_TIMEOUT_MS } : { body, timeoutMs: DEPLOY_TIMEOUT_MS };
        return (await client.post<T>(path, o)).body;
    }

    async put<T>(path: string, body: unknown): Promise<T> {
        return (await this.http.put<T>(path, { body, timeoutMs: DEPLOY_TIMEOUT_MS })).body;
    }

    async del<T>(path: string, opts: { v1?: boolean; query?: Query } = {}): Promise<T> {
        const client = opts.v1 ? this.v1 : this.http;
        const o = opts.query ? { query: opts.query, timeoutMs: DEPLOY_TIMEOUT_MS } : { timeoutMs: DEPLOY_TIMEOUT_MS };
        return (await client.del<T>(path, o)).body;
    }

    // ---- typed shortcuts

    listApplications(q: Query = {}): Promise<Application[]> {
        return this.listAll<Application>('/applications', q);
    }

    listServices(q: Query = {}): Promise<Service[]> {
        return this.listAll<Service>('/services', q);
    }

    listInstances(q: Query = {}): Promise<Instance[]> {
        return this.listAll<Instance>('/instances', q);
    }

    /**
     * Instances whose stored record lacks (or has stale) top-level index
     * copies of params.server_uuid / params.image_uuid: `unindexed=true`,
     * which the server answers in one streamed response (never paged).
     */
    async listUnindexedInstances(q: Query = {}): Promise<Instance[]> {
        const res = await this.http.get<Instance[]>('/instances', { query: { ...q, unindexed: true }, timeoutMs: SCAN_TIMEOUT_MS });
        return Array.isArray(res.body) ? res.body : [];
    }

    async listManifests(): Promise<Manifest[]> {
        return this.get<Manifest[]>('/manifests');
    }

    getInstance(uuid: string): Promise<Instance> {
        return this.get<Instance>(`/instances/${encodeURIComponent(uuid)}`);
    }

    updateInstanceParams(uuid: string, params: Dict): Promise<Instance> {
        return this.put<Instance>(`/instances/${encodeURIComponent(uuid)}`, { params });
    }

    getRollout(uuid: string): Promise<Rollout> {
        return this.get<Rollout>(`/rollouts/${encodeURIComponent(uuid)}`);
    }

    /** An application by uuid, or by name when exactly one application has it. */
    async resolveApplication(nameOrUuid: string): Promise<Application> {
        if (isUuid(nameOrUuid)) {
            return this.get<Application>(`/applications/${nameOrUuid}`);
        }
        const found = await this.listApplications({ name: nameOrUuid });
        if (found.length !== 1) {
            throw new CliError(
                found.length === 0 ? `no application named "${nameOrUuid}"` : `${found.length} applications are named "${nameOrUuid}"; give a UUID`,
            );
        }
        return found[0] as Application;
    }

    /** A service by uuid, or by name when exactly one service has it. */
    async resolveService(nameOrUuid: string): Promise<Service> {
        if (isUuid(nameOrUuid)) {
            return this.get<Service>(`/services/${nameOrUuid}`);
        }
        const found = await this.listServices({ name: nameOrUuid });
        if (found.length === 0) {
            throw new CliError(`no service named "${nameOrUuid}"`);
        }
        if (found.length > 1) {
            const which = found.map((s) => `${s.uuid} (application ${s.application_uuid})`).join(', ');
            throw new CliError(`${found.length} services are named "${nameOrUuid}": ${which}; give a UUID`);
        }
        return found[0] as Service;
    }
}
