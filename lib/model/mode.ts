// Modes: proto records only; full deploys through the
// deployers. The mode is persisted in the store; the only switch is
// proto → full. TEST_SAPI_PROTO_MODE=true forces proto.

import { invalidArgument, missingParameter, toApiError } from '../errors.js';
import { MODE_META_KEY, type Store } from '../stor/store.js';
import type { Ctx } from './context.js';
import type { Mode } from './types.js';

/** TEST_SAPI_PROTO_MODE=true (SAPI 2.1.2's test switch) forces proto mode, whatever the store says. */
export function protoForced(env: NodeJS.ProcessEnv = process.env): boolean {
    return env.TEST_SAPI_PROTO_MODE === 'true';
}

export async function loadMode(store: Store, configured: Mode | undefined, env = process.env): Promise<Mode> {
    if (protoForced(env)) {
        return 'proto';
    }
    const stored = await store.getMeta(MODE_META_KEY);
    if (stored === 'proto' || stored === 'full') {
        return stored;
    }
    const initial = configured ?? 'proto';
    await store.setMeta(MODE_META_KEY, initial);
    return initial;
}

/** POST /mode: validates, then switches (after any migration the store needs). */
export async function setMode(ctx: Ctx, raw: unknown, migrate?: () => Promise<void>): Promise<void> {
    if (raw === undefined || raw === '') {
        throw missingParameter('missing "mode" parameter');
    }
    if (raw === 'proto' && ctx.mode.current === 'full') {
        throw invalidArgument('the switch to full mode is one-way: a SAPI in full mode cannot go back to proto');
    }
    if (raw !== 'full') {
        throw invalidArgument(`invalid mode: ${typeof raw === 'string' ? raw : JSON.stringify(raw)}`);
    }
    if (ctx.mode.current === 'full' || ctx.mode.transitioning) {
        return;
    }
    ctx.mode.transitioning = true;
    try {
        try {
            if (migrate) {
                await migrate();
            }
            await ctx.store.setMeta(MODE_META_KEY, 'full');
        } catch (err) {
            // The switch failed: still proto, on the embedded store.
            throw toApiError(err, 'store');
        }
        ctx.mode.current = 'full';
        ctx.log.info('switched to full mode');
    } finally {
        ctx.mode.transitioning = false;
    }
}
