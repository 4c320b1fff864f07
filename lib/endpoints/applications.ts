// Applications routes: thin handlers over lib/model/applications.

import type { Server } from 'restify';

import * as model from '../model/applications.js';
import type { Ctx } from '../model/context.js';
import { ifMatchOf, mount, paramsOf, quoteEtag, sendList } from './common.js';

export function mountApplications(server: Server, ctx: Ctx): void {
    mount(server, { method: 'post', path: '/applications', name: 'CreateApplication' }, async (req, res) => {
        res.send(200, await model.createApplication(ctx, paramsOf(req)));
    });
    mount(server, { method: 'get', path: '/applications', name: 'ListApplications' }, async (req, res) => {
        await sendList(res, await model.listApplications(ctx, paramsOf(req)), (a) => a);
    });
    mount(server, { method: 'get', path: '/applications/:uuid', name: 'GetApplication' }, async (req, res) => {
        const got = await model.getApplication(ctx, String(req.params.uuid));
        res.setHeader('ETag', quoteEtag(got.etag));
        res.send(200, got.value);
    });
    mount(server, { method: 'put', path: '/applications/:uuid', name: 'UpdateApplication' }, async (req, res) => {
        const got = await model.updateApplication(ctx, String(req.params.uuid), paramsOf(req), ifMatchOf(req));
        res.setHeader('ETag', quoteEtag(got.etag));
        res.send(200, got.value);
    });
    mount(server, { method: 'del', path: '/applications/:uuid', name: 'DeleteApplication' }, async (req, res) => {
        await model.deleteApplication(ctx, String(req.params.uuid));
        res.send(204);
    });
}
