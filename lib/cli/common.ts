// The per-run context every sapiadm command shares: global options, the
// clients it opened (closed at the end), output and the y/N confirmation of
// destructive commands; and mapLimit, for work that runs a bounded number at
// a time.

import type { Command } from 'commander';

import { CliError, EXIT_REFUSED, UsageError } from './errors.js';
import { SapiApi } from './sapi-api.js';
import { table, type Column } from './table.js';

// ---- i/o

export interface CliIo {
    stdout: NodeJS.WritableStream & { isTTY?: boolean };
    stderr: NodeJS.WritableStream;
    stdin: NodeJS.ReadableStream & { isTTY?: boolean };
    env: NodeJS.ProcessEnv;
}

export interface GlobalOptions {
    url: string;
    json: boolean;
}

export const DEFAULT_SAPI_URL = 'http://localhost:8080';

/** One run of sapiadm: the options, the clients it opened, the output. */
export class Cli {
    private readonly closers: (() => void)[] = [];
    private sapiApi: SapiApi | undefined;
    /** What the process exits with when no error was thrown. */
    exitCode = 0;

    constructor(readonly io: CliIo) {}

    globals(cmd: Command): GlobalOptions {
        const o = cmd.optsWithGlobals<{ url?: string; json?: boolean }>();
        const url = o.url ?? this.io.env.SAPI_URL ?? DEFAULT_SAPI_URL;
        return { url: checkUrl(url, '--url / SAPI_URL'), json: o.json === true };
    }

    sapi(cmd: Command): SapiApi {
        if (!this.sapiApi) {
            const api = new SapiApi(this.globals(cmd).url);
            this.closers.push(() => api.close());
            this.sapiApi = api;
        }
        return this.sapiApi;
    }

    /** Closes `close` at the end of the run (downstream clients). */
    track(close: () => void): void {
        this.closers.push(close);
    }

    out(text = ''): void {
        this.io.stdout.write(`${text}\n`);
    }

    warn(text: string): void {
        this.io.stderr.write(`${text}\n`);
    }

    json(value: unknown): void {
        this.out(JSON.stringify(value, null, 2));
    }

    /** The object with --json, else one line for people. */
    report(cmd: Command, obj: unknown, line: string): void {
        if (this.globals(cmd).json) {
            this.json(obj);
        } else {
            this.out(line);
        }
    }

    /** The rows as JSON with --json, else as a table. */
    list<T>(cmd: Command, rows: readonly T[], columns: readonly Column<T>[]): void {
        if (this.globals(cmd).json) {
            this.json(rows);
        } else {
            this.out(table(rows, columns));
        }
    }

    get isTTY(): boolean {
        return this.io.stdout.isTTY === true;
    }

    /** Whether someone can answer a question (stdin is a terminal). */
    get canAsk(): boolean {
        return this.io.stdin.isTTY === true;
    }

    close(): void {
        for (const c of this.closers.splice(0)) {
            c();
        }
    }
}

export function checkUrl(url: string, what: string): string {
    let u: URL;
    try {
        u = new URL(url);
    } catch {
        throw new UsageError(`${what}: not a URL: ${url}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        throw new UsageError(`${what}: not an http(s) URL: ${url}`);
    }
    return url;
}

/** Reads one line from stdin (the y/N answer); '' at end of input. */
export function readLine(stdin: NodeJS.ReadableStream): Promise<string> {
    return new Promise((resolve) => {
        let buf = '';
        const done = (): void => {
            stdin.off('data', onData);
            stdin.off('end', done);
            stdin.off('error', done);
            stdin.pause();
            resolve(buf.split('\n')[0]?.trim() ?? '');
        };
        const onData = (chunk: Buffer | string): void => {
            buf += chunk.toString();
            if (buf.includes('\n')) {
                done();
            }
        };
        stdin.on('data', onData);
        stdin.on('end', done);
        stdin.on('error', done);
        stdin.resume();
    });
}

/**
 * The y/N question a destructive command asks before it acts: true when
 * `yes` (--yes) was given or the answer is y/yes. Only a terminal is asked:
 * with stdin a pipe, a file or closed, no one may be there to read the
 * question, so without --yes the command refuses (exit 2) rather than
 * take an answer nobody typed. `question` may be worked out (a request
 * for what the command would touch) only once someone is there to ask.
 */
export async function confirm(cli: Cli, o: { yes: boolean | undefined; question: string | (() => Promise<string>); action: string }): Promise<boolean> {
    if (o.yes) {
        return true;
    }
    if (!cli.canAsk) {
        throw new CliError(`refusing to ${o.action} without --yes (not a terminal)`, EXIT_REFUSED);
    }
    const question = typeof o.question === 'string' ? o.question : await o.question();
    cli.io.stderr.write(`${question} [y/N] `);
    const answer = (await readLine(cli.io.stdin)).toLowerCase();
    return answer === 'y' || answer === 'yes';
}

/** `fn` over `items`, at most `limit` at a time; the results in the items' order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
    const out: R[] = new Array<R>(items.length);
    let next = 0;
    const worker = async (): Promise<void> => {
        while (next < items.length) {
            const i = next++;
            out[i] = await fn(items[i] as T);
        }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return out;
}
