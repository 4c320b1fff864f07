// Manifests routes: thin handlers over lib/model/manifests.

import type { Server } from 'restify';

import type { Ctx } from '../model/context.js';
import * as model from '../model/manifests.js';
import { mount, paramsOf, sendList } from './common.js';

export function mountManifests(server: Server, ctx: Ctx): void {
    mount(server, { method: 'post', path: '/manifests', name: 'CreateManifest' }, async (req, res) => {
        res.send(200, await model.createManifest(ctx, paramsOf(req)));
    });
    mount(server, { method: 'get', path: '/manifests', name: 'ListManifests' }, async (req, res) => {
        await sendList(res, await model.listManifests(ctx, paramsOf(req)), (m) => m);
    });
    mount(server, { method: 'get', path: '/manifests/:uuid', name: 'GetManifest' }, async (req, res) => {
        res.send(200, await model.getManifest(ctx, String(req.params.uuid)));
    });
    mount(server, { method: 'del', path: '/manifests/:uuid', name: 'DeleteManifest' }, async (req, res) => {
        await model.deleteManifest(ctx, String(req.params.uuid));
        res.send(204);
    });
}
