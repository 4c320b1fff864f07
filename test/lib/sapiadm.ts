// Run the real bin/sapiadm.ts in a child process and collect its exit
// code, output and (when it printed JSON) the parsed document.

import type { Test } from 'tap';

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
    for (const k of ['SAPI_URL', 'CNAPI_URL', 'VMAPI_URL']) delete env[k];
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
    let json: unknown = undefined;
    if (/^\s*[[{]/.test(stdout)) {
        try {
            json = JSON.parse(stdout);
        } catch {
            json = undefined;
        }
    }
    return { code, stdout, stderr, json };
}

/** Asserts the exit code; on failure the diagnostics show what the command printed. */
export function exits(t: Test, r: AdmResult, code: number, what = ''): void {
    t.equal(r.code, code, `exit ${code}${what ? `: ${what}` : ''}`, { stdout: r.stdout, stderr: r.stderr });
}
