// GetConfigs: config-agent's hot path, with ETag / If-None-Match (304).

import type { Server } from 'restify';

import { preconditionFailed } from '../errors.js';
import { buildConfig, configEtag } from '../model/config-doc.js';
import type { Ctx } from '../model/context.js';
import { mount, parseEtagList, quoteEtag } from './common.js';

export function mountConfigs(server: Server, ctx: Ctx): void {
    mount(server, { method: 'get', path: '/configs/:uuid', name: 'GetConfigs' }, async (req, res) => {
        const doc = await buildConfig(ctx, String(req.params.uuid));
        const etag = configEtag(doc);
        res.setHeader('Etag', quoteEtag(etag));
        const ifMatch = parseEtagList(req.headers['if-match']);
        if (ifMatch && !ifMatch.includes('*') && !ifMatch.includes(etag)) {
            throw preconditionFailed(`config etag is ${etag}`);
        }
        const ifNoneMatch = parseEtagList(req.headers['if-none-match']);
        if (ifNoneMatch && (ifNoneMatch.includes('*') || ifNoneMatch.includes(etag))) {
            res.send(304);
            return;
        }
        res.send(200, doc);
    });
}
