// GetConfigs: config-agent's hot path, with ETag / If-None-Match (304).
// The document comes from ctx.configs (lib/model/config-cache.ts) when the
// composition root gave one: a 304 then needs only the kept ETag, and a 200
// the kept JSON.

import type { Server } from 'restify';

import { preconditionFailed } from '../errors.js';
import { buildConfig, configEtag } from '../model/config-doc.js';
import type { ConfigAnswer, Ctx } from '../model/context.js';
import { mount, parseEtagList, quoteEtag } from './common.js';

export function mountConfigs(server: Server, ctx: Ctx): void {
    mount(server, { method: 'get', path: '/configs/:uuid', name: 'GetConfigs' }, async (req, res) => {
        const uuid = String(req.params.uuid);
        const ifMatch = parseEtagList(req.headers['if-match']);
        const ifNoneMatch = parseEtagList(req.headers['if-none-match']);
        let answer = await configOf(ctx, uuid, false);
        // Twice at most: the second answer always carries its JSON.
        for (;;) {
            const { etag, body } = answer;
            res.setHeader('Etag', quoteEtag(etag));
            if (ifMatch && !ifMatch.includes('*') && !ifMatch.includes(etag)) {
                throw preconditionFailed(`config etag is ${etag}`);
            }
            if (ifNoneMatch && (ifNoneMatch.includes('*') || ifNoneMatch.includes(etag))) {
                res.send(304);
                return;
            }
            if (body !== null) {
                res.sendRaw(200, body, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
                return;
            }
            answer = await configOf(ctx, uuid, true);
        }
    });
}

async function configOf(ctx: Ctx, uuid: string, withBody: boolean): Promise<ConfigAnswer> {
    if (ctx.configs) {
        return ctx.configs.get(ctx, uuid, withBody);
    }
    const doc = await buildConfig(ctx, uuid);
    return { etag: configEtag(doc), body: Buffer.from(JSON.stringify(doc), 'utf8') };
}
