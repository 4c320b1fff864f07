// Before items run, what CNAPI says of their servers decides which run:
// items on servers that cannot take an install fail at once, items whose
// agent is already at the target (or newer) are skipped, and a resumed
// rollout counts as succeeded what finished unseen.

import type { CnapiAgent } from '../clients/cnapi.js';
import { mergeParams } from '../model/instance-records.js';
import type { Instance } from '../model/types.js';
import { BUCKETS } from '../stor/buckets.js';
import { isoNow, systemClock } from './clock.js';
import type { PlanDeps } from './input.js';
import type { Rollout, RolloutItem } from './types.js';
import { compareVersions, versionLookup } from './versions.js';

/** How settleItems decides. */
export interface SettleOptions {
    /** Fail the items of servers that cannot take an install now. */
    checkReady: boolean;
    /** A rollout taken over after a restart (see settleItems). */
    resumed: boolean;
    /** Record in SAPI the image CNAPI reports for skipped items (false: a preview writes nothing). */
    record?: boolean;
    /** Run items whose agent is newer than their target (a revert, or allow_downgrade). */
    allowDowngrade?: boolean;
}

/**
 * Before items run: fail those on servers that cannot take an install
 * (one CNAPI call for all), record from_image and the versions, and skip
 * those whose agent CNAPI's server.agents already shows at the target
 * image (their SAPI record follows), or at a newer version than the
 * target's, unless going back is allowed: a rollout never downgrades by
 * accident. In a resumed rollout (`resumed`), a pending item found at its
 * target was upgraded since the rollout started (progress is written every
 * 500 ms, so a restart can lose the last steps): it succeeded, and is not
 * run again.
 */
export async function settleItems(deps: PlanDeps, r: Rollout, items: RolloutItem[], reqId: string, opts: SettleOptions): Promise<void> {
    const now = isoNow(deps.clock ?? systemClock);
    const servers = [...new Set(items.filter((i) => i.state === 'pending').map((i) => i.server_uuid))];
    if (servers.length === 0) {
        return;
    }
    const info = { reqId, log: deps.log, async: false };
    if (opts.checkReady && deps.agent.checkServers) {
        const notReady = await deps.agent.checkServers(info, servers);
        for (const item of items) {
            const why = notReady.get(item.server_uuid);
            if (why && item.state === 'pending') {
                item.state = 'failed';
                item.error = why;
                item.reason = 'server not ready';
                item.finished_at = now;
            }
        }
        if (notReady.size > 0) {
            r.warnings.push(`${now}: ${notReady.size} server(s) not ready; their items failed without an attempt`);
        }
    }
    if (!deps.cnapi) {
        return;
    }
    let agents: Map<string, CnapiAgent[]>;
    try {
        const found = await deps.cnapi.listServers({ uuids: servers, extras: ['agents'], reqId });
        agents = new Map(found.map((s) => [s.uuid, s.agents ?? []]));
    } catch (err) {
        // Without server.agents every item simply runs (installing an image again is harmless).
        deps.log.warn({ err, rollout: r.uuid }, 'could not read server.agents; no item is skipped');
        r.warnings.push(`${now}: could not read CNAPI server.agents (${(err as Error).message}); no item skipped`);
        return;
    }
    let skipped = 0;
    let found = 0;
    let newer = 0;
    const versionOf = versionLookup(deps, reqId);
    for (const item of items) {
        if (item.state !== 'pending') {
            continue;
        }
        const entry = agents.get(item.server_uuid)?.find((a) => a.name === item.service_name);
        if (item.from_image === undefined && entry?.image_uuid) {
            item.from_image = entry.image_uuid;
        }
        // What runs there now, by CNAPI (else SAPI's record), and where it goes.
        const onServer = entry?.image_uuid ?? item.from_image;
        const fromVersion = entry?.image_uuid && entry.version ? entry.version : await versionOf(onServer);
        const toVersion = await versionOf(item.to_image);
        if (fromVersion) item.from_version = fromVersion;
        if (toVersion) item.to_version = toVersion;
        if (item.action !== undefined && item.action !== 'upgrade') {
            // Installs, adoptions and uninstalls are not compared with a target.
            continue;
        }
        if (entry?.image_uuid !== item.to_image) {
            const cmp = compareVersions(fromVersion, toVersion);
            if (cmp !== null && cmp > 0 && !opts.allowDowngrade && !opts.resumed) {
                item.state = 'skipped';
                item.reason = `newer than the target (${String(fromVersion)} > ${String(toVersion)}); allow_downgrade to go back`;
                item.finished_at = now;
                newer += 1;
            }
            continue;
        }
        item.finished_at = now;
        if (opts.resumed) {
            item.state = 'succeeded';
            found += 1;
        } else {
            item.state = 'skipped';
            item.reason = 'already at the target image';
            skipped += 1;
        }
        if (opts.record === false) {
            continue;
        }
        try {
            const cur = await deps.ctx.store.get<Instance>(BUCKETS.instances.name, item.instance_uuid);
            if (cur && cur.value.params?.image_uuid !== item.to_image) {
                await mergeParams(deps.ctx, item.instance_uuid, { image_uuid: item.to_image });
            }
        } catch (err) {
            deps.log.warn({ err, instance: item.instance_uuid }, 'could not record the image CNAPI reports');
        }
    }
    if (found > 0) {
        r.warnings.push(
            `${now}: ${found} item(s) found at their target image (CNAPI server.agents) since the rollout started: counted as succeeded, not run again`,
        );
    }
    if (skipped > 0) {
        deps.log.info({ rollout: r.uuid, skipped }, 'items already at their target image skipped');
    }
    if (newer > 0) {
        r.warnings.push(`${now}: ${newer} item(s) skipped: their agent is newer than the target (allow_downgrade to go back)`);
    }
}
