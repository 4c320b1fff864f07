#!/usr/bin/env node
// sapiadm: the operator CLI over SAPI's REST API (commands in lib/cli/).

import { run } from '../lib/cli/program.js';
import { packageVersion } from '../lib/version.js';

// `sapiadm ... | head`: a closed pipe ends the output quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') {
        process.exit(0);
    }
    throw err;
});

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`sapiadm (${packageVersion()})\n`);
    process.exit(0);
}

process.exitCode = await run(argv, {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
});
// Every client is closed by now; a stray handle must not keep the shell waiting.
setTimeout(() => process.exit(), 2000).unref();
