// sapiadm server setup-agents: give servers the agents they lack, without
// the agentsshar. One plan (POST /rollouts with install_missing) over every
// agent service: each agent a server has neither in SAPI nor in CNAPI's
// server.agents is installed (config-agent and agents_core first, one task
// at a time per server), each it has but SAPI does not record is adopted,
// and the others are upgraded to their service's image like any plan.
// Servers that cannot take installs (not set up, not running, no cn-agent)
// are named with the reason. Watched as `sapiadm rollout` watches.

import type { Command } from 'commander';

import { collect, mustUuid, positiveInt } from './args.js';
import type { Cli } from './common.js';
import { maxFailures } from './rollout.js';
import { showPlan, startAndWatch } from './rollout-view.js';

interface SetupOpts {
    exclude?: string[];
    concurrency?: string;
    maxFailures?: string;
    dryRun?: boolean;
    watch: boolean;
    interval: string;
}

export function define(cli: Cli, cmd: Command): void {
    cmd.command('setup-agents')
        .description('install the agents these servers lack (and adopt the ones SAPI does not record): one plan over every agent service')
        .argument('<SERVER...>', 'server UUIDs')
        .option('--exclude <NAME[,NAME]>', 'leave out these agent services (names or UUIDs; repeatable)', collect)
        .option('--concurrency <N>', 'servers worked on at once (server default 20)')
        .option('--max-failures <N|N%>', 'pause when this many items failed')
        .option('--dry-run', 'print what would be installed, adopted or upgraded, server by server, and start nothing')
        .option('--no-watch', 'print the rollout id and return')
        .option('--interval <MS>', 'progress poll interval', '1000')
        .addHelpText(
            'after',
            `
cn-agent is never installed (it runs the install tasks: CN setup installs
it); a server without it, or not set up, or not running, is left alone and
named. A re-run installs nothing. A failed install pauses the plan per
--max-failures; \`sapiadm rollout revert ID\` uninstalls what it installed.

Examples:
  sapiadm server setup-agents 564d2c90-7f1e-4a3b-9c5d-d8e2b4a6f013 --dry-run
  sapiadm server setup-agents 564d2c90-... 564d71a9-... --exclude marlin-agent

Exit status: as \`sapiadm rollout start\` (0 done or nothing needed, 1 an
item failed or an API error, 3 nothing could be done, 4 paused).`,
        )
        .action(async (servers: string[], o: SetupOpts, c: Command) => {
            const body: Record<string, unknown> = {
                all_agents: true,
                install_missing: true,
                servers: servers.map((s) => mustUuid(s, 'SERVER')),
            };
            const excludes = (o.exclude ?? [])
                .flatMap((v) => v.split(','))
                .map((v) => v.trim())
                .filter(Boolean);
            if (excludes.length > 0) body.exclude_services = excludes;
            if (o.concurrency !== undefined) body.concurrency = positiveInt(o.concurrency, '--concurrency');
            if (o.maxFailures !== undefined) body.max_failures = maxFailures(o.maxFailures);
            if (o.dryRun) {
                await showPlan(cli, c, body);
                return;
            }
            await startAndWatch(cli, c, body, o.watch, positiveInt(o.interval, '--interval'));
        });
}
