// Instances routes: thin handlers over lib/model/instances.

import type { Server } from 'restify';

import { loadParents } from '../model/config-doc.js';
import type { Ctx } from '../model/context.js';
import * as model from '../model/instances.js';
import { buildPayload } from '../model/payload.js';
import { flagValue } from '../model/validate.js';
import { ifMatchOf, instanceOmittedKeys, mount, paramsOf, quoteEtag, sendList, serializeInstance } from './common.js';

/** Deploying requests may run for an hour (2.1.2 raises the socket timeout). */
const DEPLOY_SOCKET_TIMEOUT_MS = 3_600_000;

export function mountInstances(server: Server, ctx: Ctx): void {
    mount(server, { method: 'post', path: '/instances', name: 'CreateInstance', socketTimeoutMs: DEPLOY_SOCKET_TIMEOUT_MS }, async (req, res, info) => {
        const out = await model.createInstance(ctx, info, paramsOf(req));
        res.send(200, serializeInstance(out.instance, info.v2, out.job_uuid));
    });
    mount(server, { method: 'get', path: '/instances', name: 'ListInstances' }, async (req, res, info) => {
        const list = await model.listInstances(ctx, info, paramsOf(req), instanceOmittedKeys(info.v2));
        await sendList(res, list, (i) => serializeInstance(i, info.v2));
    });
    mount(server, { method: 'get', path: '/instances/:uuid', name: 'GetInstance' }, async (req, res, info) => {
        const got = await model.getInstance(ctx, String(req.params.uuid));
        res.setHeader('ETag', quoteEtag(got.etag));
        res.send(200, serializeInstance(got.value, info.v2));
    });
    mount(server, { method: 'get', path: '/instances/:uuid/payload', name: 'GetInstancePayload' }, async (req, res) => {
        const inst = (await model.getInstance(ctx, String(req.params.uuid))).value;
        const { service, application } = await loadParents(ctx, inst.service_uuid);
        res.send(200, buildPayload(application, service, inst));
    });
    mount(server, { method: 'put', path: '/instances/:uuid', name: 'UpdateInstance' }, async (req, res, info) => {
        const got = await model.updateInstance(ctx, String(req.params.uuid), paramsOf(req), ifMatchOf(req));
        res.setHeader('ETag', quoteEtag(got.etag));
        res.send(200, serializeInstance(got.value, info.v2));
    });
    mount(
        server,
        { method: 'put', path: '/instances/:uuid/upgrade', name: 'UpgradeInstance', socketTimeoutMs: DEPLOY_SOCKET_TIMEOUT_MS },
        async (req, res, info) => {
            const out = await model.upgradeInstance(ctx, info, String(req.params.uuid), paramsOf(req));
            res.send(200, serializeInstance(out.instance, info.v2, out.job_uuid));
        },
    );
    mount(server, { method: 'del', path: '/instances/:uuid', name: 'DeleteInstance', socketTimeoutMs: DEPLOY_SOCKET_TIMEOUT_MS }, async (req, res, info) => {
        await model.deleteInstance(ctx, info, String(req.params.uuid));
        res.send(204);
    });
    mount(server, { method: 'del', path: '/servers/:server_uuid/instances', name: 'DeleteServerInstances', accepts: ['dry_run'] }, async (req, res) => {
        const params = paramsOf(req);
        res.send(200, await model.deleteServerInstances(ctx, String(req.params.server_uuid), flagValue(params.dry_run)));
    });
}
