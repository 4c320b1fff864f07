// The course every `sapiadm check` subcommand takes: gather a report and
// print it; without --fix (or with nothing to fix) stop there, exit 3 while
// drift remains; with --fix ask on a terminal (without --yes; elsewhere
// refuse, exit 2), apply the fixes, gather again and say whether SAPI and
// the other service agree now. What is checked,
// what a fix does and the wording are the subcommand's.

import type { Cli } from './common.js';
import { confirm } from './common.js';
import { EXIT_DRIFT, EXIT_OK } from './errors.js';
import { plural } from './table.js';

/** What a check reports: the issues found, and how many --fix can change. */
export interface CheckReport {
    drift: number;
    fixable: number;
}

export interface CheckFlow<R extends CheckReport, A extends { ok: boolean }> {
    json: boolean;
    fix: boolean | undefined;
    yes: boolean | undefined;
    gather(): Promise<R>;
    /** The report for people (not called with --json). */
    print(report: R): void;
    /** Printed when there is drift --fix can change but --fix was not given. */
    fixHint: string;
    /** Printed with --fix when nothing found can be fixed. */
    nothingToFix: string;
    /** The y/N question asked before fixing (without --yes). */
    question(report: R): string;
    /** What --fix does, for the refusal without --yes off a terminal ("change 3 SAPI records"). */
    action(report: R): string;
    /** Applies the fixes of `before`, printing each outcome unless --json. */
    apply(before: R): Promise<A[]>;
    /** The service SAPI agrees with once fixed, e.g. 'VMAPI'. */
    other: string;
}

/** Runs one check as the flow says and sets `cli.exitCode` (0 clean, 3 drift remains). */
export async function runCheck<R extends CheckReport, A extends { ok: boolean }>(cli: Cli, flow: CheckFlow<R, A>): Promise<void> {
    const { json } = flow;
    const before = await flow.gather();
    if (!json) flow.print(before);
    if (before.drift === 0 || !flow.fix) {
        if (json) {
            cli.json({ report: before });
        } else if (before.fixable > 0) {
            cli.out(flow.fixHint);
        }
        cli.exitCode = before.drift === 0 ? EXIT_OK : EXIT_DRIFT;
        return;
    }
    if (before.fixable === 0) {
        if (json) cli.json({ report: before });
        else cli.out(flow.nothingToFix);
        cli.exitCode = EXIT_DRIFT;
        return;
    }
    if (!(await confirm(cli, { yes: flow.yes, question: flow.question(before), action: flow.action(before) }))) {
        cli.warn('Nothing changed.');
        if (json) cli.json({ report: before });
        cli.exitCode = EXIT_DRIFT;
        return;
    }
    if (!json) cli.out('Fixing:');
    const actions = await flow.apply(before);
    const after = await flow.gather();
    if (json) {
        cli.json({ report: before, actions, after });
    } else {
        const made = plural(actions.filter((a) => a.ok).length, 'change');
        cli.out('');
        if (after.drift === 0) {
            cli.out(`Fixed: ${made}; SAPI and ${flow.other} agree now.`);
        } else {
            cli.out(`After --fix (${made} made):`);
            flow.print(after);
        }
    }
    cli.exitCode = after.drift === 0 ? EXIT_OK : EXIT_DRIFT;
}
