// Run the real bin/sapiadm.ts in a child process and collect its exit
// code, output and (when it printed JSON) the parsed document; or run
// sapiadm in this process with a terminal on stdin (a stream that says it
// is a TTY), to answer its y/N questions.

import { PassThrough } from 'node:stream';

import type { Test } from 'tap';

import { run } from '../../lib/cli/program.js';
import { spawnTs } from './child.js';

export interface AdmResult {
    code: number | null;
    stdout: string;
    stderr: string;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    json: any;
}

export interface AdmOptions {
    /** SAPI_URL for the child. */
    url?: string;
    env?: Record<string, string>;
    /** Written to the child's stdin (else stdin is closed). */
    stdin?: string;
}

export async function sapiadm(args: string[], opts: AdmOptions = {}): Promise<AdmResult> {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of ['SAPI_URL', 'CNAPI_URL', 'VMAPI_URL', 'IMGAPI_URL']) delete env[k];
    if (opts.url) env.SAPI_URL = opts.url;
    Object.assign(env, opts.env);
    const proc = spawnTs('bin/sapiadm.ts', args, { env, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    if (opts.stdin !== undefined) {
        proc.stdin?.end(opts.stdin);
    }
    // 'close' comes after the child exited and its output streams ended.
    const code = await new Promise<number | null>((resolve) => proc.once('close', (c: number | null) => resolve(c)));
    return { code, stdout, stderr, json: parsed(stdout) };
}

function parsed(stdout: string): unknown {
    if (/^\s*[[{]/.test(stdout)) {
        try {
            return JSON.parse(stdout) as unknown;
        } catch {
            return undefined;
        }
    }
    return undefined;
}

/**
 * sapiadm in this process, its stdin a terminal: `answer` (a line) is
 * typed once the question ("[y/N] ") is on stderr. `asked` in the result
 * says whether it was.
 */
export async function sapiadmAtTerminal(
    args: string[],
    opts: { url: string; env?: Record<string, string>; answer: string },
): Promise<AdmResult & { asked: boolean }> {
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    let asked = false;
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    stderr.on('data', (c: Buffer) => {
        err += c.toString();
        if (!asked && err.includes('[y/N] ')) {
            asked = true;
            stdin.write(`${opts.answer}\n`);
        }
    });
    const code = await run(args, { stdin, stdout, stderr, env: { SAPI_URL: opts.url, ...opts.env } });
    return { code, stdout: out, stderr: err, json: parsed(out), asked };
}

/** Asserts the exit code; on failure the diagnostics show what the command printed. */
export function exits(t: Test, r: AdmResult, code: number, what = ''): void {
    t.equal(r.code, code, `exit ${code}${what ? `: ${what}` : ''}`, { stdout: r.stdout, stderr: r.stderr });
}
