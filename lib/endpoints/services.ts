// Services routes: thin handlers over lib/model/services.

import type { Server } from 'restify';

import type { Ctx } from '../model/context.js';
import * as model from '../model/services.js';
import { ifMatchOf, mount, paramsOf, quoteEtag, sendList, serializeService } from './common.js';

export function mountServices(server: Server, ctx: Ctx): void {
    mount(server, { method: 'post', path: '/services', name: 'CreateService' }, async (req, res, info) => {
        res.send(200, serializeService(await model.createService(ctx, paramsOf(req)), info.v2));
    });
    mount(server, { method: 'get', path: '/services', name: 'ListServices' }, async (req, res, info) => {
        await sendList(res, await model.listServices(ctx, paramsOf(req), info.v2), (s) => serializeService(s, info.v2));
    });
    mount(server, { method: 'get', path: '/services/:uuid', name: 'GetService' }, async (req, res, info) => {
        const got = await model.getService(ctx, String(req.params.uuid));
        res.setHeader('ETag', quoteEtag(got.etag));
        res.send(200, serializeService(got.value, info.v2));
    });
    mount(server, { method: 'put', path: '/services/:uuid', name: 'UpdateService' }, async (req, res, info) => {
        const got = await model.updateService(ctx, String(req.params.uuid), paramsOf(req), ifMatchOf(req));
        res.setHeader('ETag', quoteEtag(got.etag));
        res.send(200, serializeService(got.value, info.v2));
    });
    mount(server, { method: 'del', path: '/services/:uuid', name: 'DeleteService' }, async (req, res) => {
        await model.deleteService(ctx, String(req.params.uuid));
        res.send(204);
    });
}
