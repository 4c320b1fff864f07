// The way back: one revert item per succeeded upgrade whose previous image
// differs (back to it) and per install (uninstalled); adoptions installed
// nothing and are left as they are. The previous images are checked as a
// start checks its targets, and the servers as a start does.

import { find } from '../model/objects.js';
import type { Service } from '../model/types.js';
import type { PlanDeps } from './input.js';
import { settleItems } from './settle.js';
import type { Rollout, RolloutItem } from './types.js';

/** The revert items of `r` (pending; not yet added to it). */
export function revertItems(r: Rollout): RolloutItem[] {
    return r.items
        .filter(
            (i) =>
                i.phase !== 'revert' &&
                i.state === 'succeeded' &&
                (i.action === 'install' || ((i.action ?? 'upgrade') === 'upgrade' && i.from_image !== undefined && i.from_image !== i.to_image)),
        )
        .map((i) => ({
            instance_uuid: i.instance_uuid,
            server_uuid: i.server_uuid,
            service_uuid: i.service_uuid,
            service_name: i.service_name,
            ...(i.action === 'install' ? { action: 'uninstall' as const, to_image: i.to_image } : { from_image: i.to_image, to_image: i.from_image as string }),
            phase: 'revert' as const,
            state: 'pending' as const,
            attempts: 0,
        }));
}

/**
 * Check the revert items before they run: each previous image once (it may
 * have been removed from IMGAPI since; its items fail, stamped `now`), then
 * the servers and what runs there, as a start does. A revert is the one
 * flow that goes back to older images.
 */
export async function checkRevert(deps: PlanDeps, r: Rollout, back: RolloutItem[], reqId: string, now: string): Promise<void> {
    const images = new Map<string, RolloutItem>();
    for (const item of back) if (item.action !== 'uninstall') images.set(`${item.service_uuid}/${item.to_image}`, item);
    for (const item of images.values()) {
        let err: string | undefined;
        try {
            const svc = await find<Service>(deps.ctx.store, 'service', item.service_uuid);
            if (svc) await deps.agent.checkImage?.({ reqId, log: deps.log, async: false }, item.to_image, svc.value);
        } catch (e) {
            err = (e as Error).message;
        }
        if (err !== undefined) {
            for (const i of back) {
                if (i.action !== 'uninstall' && i.service_uuid === item.service_uuid && i.to_image === item.to_image) {
                    i.state = 'failed';
                    i.error = err;
                    i.finished_at = now;
                }
            }
        }
    }
    await settleItems(deps, r, back, reqId, { checkReady: true, resumed: false, allowDowngrade: true });
}
