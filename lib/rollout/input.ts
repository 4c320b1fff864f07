// What a rollout is started with: the request, checked before anything
// is planned (the schema, then that exactly one form is given), and what
// planning reads through.

import type Logger from 'bunyan';

import type { CnapiClient } from '../clients/cnapi.js';
import type { ImgapiClient } from '../clients/imgapi.js';
import type { Deployer } from '../model/deployer.js';
import { invalidArgument, missingKeys, missingParameter, noDeployer } from '../errors.js';
import type { Ctx } from '../model/context.js';
import { flagValue, validateRequest } from '../model/validate.js';
import type { RequestOf } from '../../schemas/requests.js';
import type { Clock } from './clock.js';

/** What a rollout is started with: the CreateRollout request schema's type. */
export type StartRollout = RequestOf<'CreateRollout'>;

/** Check a rollout request: its schema, then that exactly one form is given (409 naming what is wrong). */
export function rolloutInput(params: Record<string, unknown>): StartRollout {
    validateRequest('CreateRollout', params);
    const single = params.service_uuid !== undefined;
    const list = params.services !== undefined;
    const all = flagValue(params.all_agents);
    const forms = [single, list, all].filter(Boolean).length;
    if (forms === 0) {
        if (params.image_uuid !== undefined) {
            throw missingKeys(['service_uuid']);
        }
        throw missingParameter('missing required keys: service_uuid, image_uuid (or give services, or all_agents: true)');
    }
    if (forms > 1) {
        throw invalidArgument('give exactly one of service_uuid (with image_uuid), services or all_agents');
    }
    if (single && params.image_uuid === undefined) {
        throw missingKeys(['image_uuid']);
    }
    if (!single && params.image_uuid !== undefined) {
        throw invalidArgument('image_uuid goes with service_uuid; in a plan each entry of services has its own image_uuid');
    }
    if (single && params.exclude_services !== undefined) {
        throw invalidArgument('exclude_services goes with services or all_agents');
    }
    if (flagValue(params.install_missing) && params.instances !== undefined) {
        throw invalidArgument('install_missing goes with servers, not instances (an agent to install has no instance yet)');
    }
    if (params.auto_promote_after_ms !== undefined && params.canary === undefined) {
        throw invalidArgument('auto_promote_after_ms goes with canary');
    }
    if (typeof params.max_failures === 'string') {
        const pct = Number(params.max_failures.slice(0, -1));
        if (!(pct > 0 && pct <= 100)) {
            throw invalidArgument('max_failures must be a count of at least 1 or a percentage such as "5%" (over 0, at most 100)');
        }
    }
    return params;
}

export interface PlanDeps {
    ctx: Ctx;
    log: Logger;
    agent: Deployer;
    cnapi: CnapiClient | undefined;
    /** For the versions of images server.agents does not name (none: versions are compared only where CNAPI gives them). */
    imgapi?: ImgapiClient | undefined;
    /** The time planned items and warnings are stamped with (default: the system clock). */
    clock?: Clock | undefined;
}

/** What planning reads through; only in full mode, with an agent deployer (else a 409). */
export function planDepsOf(ctx: Ctx, log: Logger, cnapi: CnapiClient | undefined, imgapi: ImgapiClient | undefined, clock: Clock): PlanDeps {
    if (ctx.mode.current !== 'full') {
        throw invalidArgument('rollouts deploy agents and need full mode');
    }
    const agent = ctx.deployers.agent;
    if (!agent) {
        throw noDeployer('agent');
    }
    return { ctx, log, agent, cnapi, imgapi, clock };
}
