// mountAll: every route of the API, one file per resource.

import type { Server } from 'restify';

import type { Ctx } from '../model/context.js';
import type { RolloutManager } from '../rollout/runner.js';
import { mountApplications } from './applications.js';
import { mountConfigs } from './configs.js';
import { mountInstances } from './instances.js';
import { mountManifests } from './manifests.js';
import { mountRollouts } from './rollouts.js';
import { mountServiceRoutes, type ServiceHooks } from './service-routes.js';
import { mountServices } from './services.js';

export function mountAll(server: Server, ctx: Ctx, rollouts: RolloutManager, hooks: ServiceHooks = {}): void {
    mountServiceRoutes(server, ctx, hooks);
    mountApplications(server, ctx);
    mountServices(server, ctx);
    mountInstances(server, ctx);
    mountManifests(server, ctx);
    mountConfigs(server, ctx);
    mountRollouts(server, rollouts);
}
