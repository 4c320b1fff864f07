// createDeployers(ctx): the deployer of each instance type whose Triton
// service is configured. A type without one fails clearly in full mode.

import type { Ctx } from '../model/context.js';
import type { InstanceType } from '../model/types.js';
import type { Deployer } from './deployer.js';

export function createDeployers(ctx: Ctx): Partial<Record<InstanceType, Deployer>> {
    void ctx;
    return {};
}
