// Every route the server mounts has its own heading in docs/index.md,
// written `## <RouteName> (<METHOD> <path>)` as in the VMAPI/SAPI docs.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { routesOf, type RouteDef } from '../../lib/endpoints/common.js';
import { startSapi } from '../lib/harness.js';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'index.md');

const HTTP_METHOD: Record<RouteDef['method'], string> = { get: 'GET', head: 'HEAD', post: 'POST', put: 'PUT', del: 'DELETE' };

function escape(s: string): string {
    return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Markdown headings of the document, code blocks excluded. */
function headings(text: string): string[] {
    const out: string[] = [];
    let fenced = false;
    for (const line of text.split('\n')) {
        if (/^\s*(```|~~~)/.test(line)) {
            fenced = !fenced;
            continue;
        }
        if (!fenced && /^#{1,6}\s/.test(line)) {
            out.push(line);
        }
    }
    return out;
}

t.test('every mounted route name has a heading in docs/index.md', async (t) => {
    // Building a server mounts every route (as declared: routesOf).
    const h = await startSapi();
    await h.close();

    const routes = new Map<string, RouteDef>();
    for (const r of routesOf(h.app.server)) {
        routes.set(r.name, r);
    }
    t.ok(routes.size >= 33, `the server mounted its routes (${routes.size})`);

    const heads = headings(readFileSync(DOC, 'utf8'));
    t.ok(heads.length > 0, 'docs/index.md has headings');

    for (const [name, r] of routes) {
        const byName = new RegExp(`\\b${escape(name)}\\b`);
        const named = heads.filter((line) => byName.test(line));
        t.ok(named.length > 0, `${name} appears in a heading`);
        const route = `${HTTP_METHOD[r.method]} ${r.path}`;
        t.ok(
            named.some((line) => line.includes(route)),
            `a heading names ${name} with its route "${route}"`,
            { found: named },
        );
    }
});
