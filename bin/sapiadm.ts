#!/usr/bin/env node
// sapiadm: the operator CLI over SAPI's REST API (commands in lib/cli/).

import { run } from '../lib/cli/program.js';

// `sapiadm ... | head`: a closed pipe ends the output quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') {
        process.exit(0);
    }
    throw err;
});

process.exitCode = await run(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
});
// Every client is closed by now; a stray handle must not keep the shell waiting.
setTimeout(() => process.exit(), 2000).unref();
