// The sapiadm command tree (commander) and run(): parse, dispatch, and map
// every outcome to an exit code (0 ok, 1 API error, 2 usage or a refused
// confirmation, 3 drift or unfinished work, 4 a watched rollout paused,
// 130 a watch interrupted).

import { Command, CommanderError } from 'commander';

import { Cli, DEFAULT_SAPI_URL, type CliIo } from './common.js';
import { CliError, describeError, EXIT_ERROR, EXIT_USAGE, UsageError } from './errors.js';

/** A command group; its module is loaded only when the group is used. */
interface Group {
    name: string;
    alias?: string;
    description: string;
    load: () => Promise<{ define: (cli: Cli, cmd: Command) => void }>;
}

const GROUPS: Group[] = [
    { name: 'applications', alias: 'apps', description: 'SAPI applications', load: () => import('./applications.js') },
    { name: 'services', alias: 'svcs', description: 'SAPI services', load: () => import('./services.js') },
    {
        name: 'instances',
        alias: 'insts',
        description: 'SAPI instances (search: sapiadm instances --server UUID)',
        load: () => import('./instances.js'),
    },
    { name: 'manifests', description: 'SAPI configuration manifests', load: () => import('./manifests.js') },
    { name: 'check', description: 'consistency checks (check server-agents: agent drift; check vm-instances: VM drift)', load: () => import('./check.js') },
    {
        name: 'migrate',
        description: 'backfill params.server_uuid and params.image_uuid on instances that lack them (SAPI 2.1.2 data)',
        load: () => import('./migrate.js'),
    },
    {
        name: 'server',
        description: "a server's agents: setup-agents installs the ones it lacks (no agentsshar needed)",
        load: () => import('./server.js'),
    },
    {
        name: 'rollout',
        description: 'upgrade agents, many servers at a time: one service to an image, or a plan of several (canaries, failure limit, revert)',
        load: () => import('./rollout.js'),
    },
];

const ROOT_HELP = `
Every request carries Accept-Version: ~2, except the record-only agent calls
(--record-only, check --fix), which are sent as an agent's postinstall sends
them (no Accept-Version: SAPI records without installing or uninstalling).

Examples:
  sapiadm instances --server 44454c4c-4400-1046-8050-b5c04f383432
  sapiadm services update vm-agent -p image_uuid=0f5c... --json
  sapiadm check server-agents --cnapi-url http://cnapi.coal.example.com --fix
  sapiadm migrate --dry-run --cnapi-url http://cnapi... --vmapi-url http://vmapi...
  sapiadm rollout plan vm-agent 0f5c...
  sapiadm rollout vm-agent 0f5c... --concurrency 10
  sapiadm rollout start --all-agents --exclude marlin-agent --canary 5
  sapiadm server setup-agents 564d2c90-7f1e-4a3b-9c5d-d8e2b4a6f013 --dry-run
  sapiadm check vm-instances --vmapi-url http://vmapi.coal.example.com

Destructive commands ask first (y/N) on a terminal: instances delete,
instances forget-server, rollout cancel, rollout revert, check ... --fix.
When stdin is not a terminal they refuse without --yes.

Environment: SAPI_URL, CNAPI_URL, VMAPI_URL, IMGAPI_URL.

Exit status:
  0    ok; a rollout upgraded every item it ran, or nothing needed
       upgrading (every agent at its target already: it says so)
  1    an API or downstream error (the server's code and message), also a
       rollout that matched no instance ("nothing to roll out", SAPI 409);
       a rollout item failed while running, or the rollout failed or was
       canceled
  2    usage error (bad arguments or options, a URL missing), or a
       confirmation refused: "refusing to ... without --yes (not a terminal)"
       (a destructive command, stdin not a terminal), or a question not
       answered y
  3    drift or unfinished work: check found drift that remains (also when
       its --fix question is not answered y), migrate could not backfill
       everything, a rollout upgraded nothing while agents remain off their
       target (newer than it without --allow-downgrade, or on servers not
       ready); the output says why
  4    a watched rollout paused (promote, resume or revert it)
  130  a rollout watch interrupted (Ctrl-C); the rollout goes on in SAPI`;

/** The group `argv` names (`sapiadm [-u URL] [--json] GROUP ...`, or `help GROUP`). */
function groupIn(argv: string[]): Group | undefined {
    const operands: string[] = [];
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i] ?? '';
        if (a === '-u' || a === '--url') {
            i++;
        } else if (!a.startsWith('-')) {
            operands.push(a);
        }
    }
    const name = operands[0] === 'help' ? operands[1] : operands[0];
    return GROUPS.find((g) => g.name === name || g.alias === name);
}

export async function buildProgram(cli: Cli, argv: string[]): Promise<Command> {
    const program = new Command('sapiadm')
        .description('Operate Triton SAPI: applications, services, instances, manifests, agent drift, migration, rollouts')
        .option('-u, --url <URL>', `SAPI URL (default: $SAPI_URL or ${DEFAULT_SAPI_URL})`)
        .option('--json', 'print JSON (for scripts) instead of tables and text')
        .addHelpText('after', ROOT_HELP);
    // Every group shows in the help; only the one used is loaded (start-up time).
    const used = groupIn(argv);
    for (const g of GROUPS) {
        const cmd = program.command(g.name).description(g.description);
        if (g.alias) cmd.alias(g.alias);
        if (g === used) {
            (await g.load()).define(cli, cmd);
        }
    }

    // Apply the settings to the whole tree (subcommands made before this lack them).
    const configure = (cmd: Command): void => {
        cmd.exitOverride()
            .showHelpAfterError('(add --help for usage)')
            .configureOutput({
                writeOut: (s) => void cli.io.stdout.write(s),
                writeErr: (s) => void cli.io.stderr.write(s),
            });
        cmd.commands.forEach(configure);
    };
    configure(program);
    return program;
}

/** Runs sapiadm with `argv` (without node and script); resolves to the exit code. */
export async function run(argv: string[], io: CliIo): Promise<number> {
    const cli = new Cli(io);
    try {
        await (await buildProgram(cli, argv)).parseAsync(argv, { from: 'user' });
        return cli.exitCode;
    } catch (err) {
        if (err instanceof CommanderError) {
            // commander printed the message (or the help) already.
            return err.exitCode === 0 ? 0 : EXIT_USAGE;
        }
        if (err instanceof UsageError) {
            io.stderr.write(`sapiadm: ${err.message}\n(add --help for usage)\n`);
            return EXIT_USAGE;
        }
        if (err instanceof CliError) {
            io.stderr.write(`sapiadm: ${err.message}\n`);
            return err.exitCode;
        }
        io.stderr.write(`sapiadm: ${describeError(err)}\n`);
        if (io.env.SAPIADM_DEBUG && err instanceof Error) {
            io.stderr.write(`${err.stack ?? ''}\n`);
        }
        return EXIT_ERROR;
    } finally {
        cli.close();
    }
}
