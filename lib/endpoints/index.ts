// mountAll: every route of the API, one file per resource.

export { routesOf, type RouteDef } from './common.js';

import type { Server } from 'restify';

import type { Ctx } from '../model/context.js';
import type { RolloutManager } from '../rollout/runner.js';
import { mountApplications } from './applications.js';
import { routesOf, type RouteDef } from './common.js';
import { mountConfigs } from './configs.js';
import { mountInstances } from './instances.js';
import { mountManifests } from './manifests.js';
import { mountRollouts } from './rollouts.js';
import { mountServiceRoutes, type ServiceHooks } from './service-routes.js';
import { mountServices } from './services.js';

/** Mount every route; returns them as declared. */
export function mountAll(server: Server, ctx: Ctx, rollouts: RolloutManager, hooks: ServiceHooks = {}): readonly RouteDef[] {
    mountServiceRoutes(server, ctx, hooks);
    mountApplications(server, ctx);
    mountServices(server, ctx);
    mountInstances(server, ctx);
    mountManifests(server, ctx);
    mountConfigs(server, ctx);
    mountRollouts(server, rollouts);
    return routesOf(server);
}
