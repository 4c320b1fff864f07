// What one rollout item does, through the model as the API would (the
// agent deployer): an upgrade is an UpgradeInstance, an install or an
// adoption a CreateInstance, an uninstall a DeleteInstance.

import type { Ctx, ReqInfo } from '../model/context.js';
import { createInstance, deleteInstance, upgradeInstance } from '../model/instances.js';
import type { RolloutItem } from './types.js';

/**
 * Run `item`. `resumed`: the rollout was taken over, so its server is
 * checked again. An install records the instance as the agent reports
 * itself (its uuid may be the agent's own: the item follows it, so a
 * revert uninstalls the right one); an adoption records what server.agents
 * shows, with no task.
 */
export async function act(ctx: Ctx, item: RolloutItem, info: ReqInfo, resumed: boolean, signal: AbortSignal): Promise<void> {
    const action = item.action ?? 'upgrade';
    if (action === 'upgrade') {
        const opts = { imageChecked: true, serverChecked: !resumed, signal };
        await upgradeInstance(ctx, info, item.instance_uuid, { image_uuid: item.to_image }, opts);
    } else if (action === 'install' || action === 'adopt') {
        // The plan checked the image and (unless taken over since) the server.
        const made = await createInstance(
            ctx,
            info,
            {
                service_uuid: item.service_uuid,
                uuid: item.instance_uuid,
                ...(action === 'adopt' ? { exists: true } : {}),
                params: { server_uuid: item.server_uuid, image_uuid: item.to_image },
            },
            { imageChecked: true, serverChecked: !resumed, signal },
        );
        item.instance_uuid = made.instance.uuid;
    } else {
        await deleteInstance(ctx, info, item.instance_uuid);
    }
}
