// The curl examples of docs/index.md run, top to bottom, against a fresh
// SAPI as `npm start` makes it (embedded store, proto mode, default
// config), and answer what the document shows.
//
// How examples are found and marked is described in test/lib/doc-examples.ts
// and at the top of docs/index.md. For each command that runs:
//
// * `localhost:8080` becomes the test server's address; nothing else in
//   the command is changed, except that curl is also asked to write the
//   response headers to a file (-D), which is where the status is read.
// * The command runs under bash with pipefail, and must exit 0.
// * The status must be the one the example shows (`HTTP/1.1 NNN`), else
//   the block's `expect`, else an error status when the shown body has a
//   JSON `code`, else 2xx.
// * Each header the example shows must be sent with that value, except
//   those that differ on every request or host (Date, x-request-id,
//   x-server-name).
// * A shown JSON body must equal the answer (key order aside); other shown
//   text must equal the output. Nothing shown: nothing checked.
// * Commands may pipe only into the POSIX text tools in PIPE_OK: an
//   operator has curl and a shell, and nothing more we can count on (no
//   json, no jq).
//
// Blocks marked `<!-- example: demo -->` run against the demo world of
// `npm run demo` (tools/demo-world.ts, started here in-process), a fresh one
// for each `#` section, in document order. For their commands:
//
// * `localhost:8080` becomes the world's SAPI, and each uuid of a run-time
//   object that an earlier output bound becomes the answered one.
// * Status and headers are checked as above; the shown body is compared by
//   the rules of test/lib/doc-match.ts (`…` placeholders and abridged
//   objects, any time for a time, run-time uuids bound where first shown).
// * A command that only reads (no -d, no -X other than GET) is run again,
//   every 100 ms for up to DEMO_RETRY_MS, until it answers as shown: the
//   world works on between commands (a rollout runs on), and such an example
//   shows what it gets to ("# a moment later").
//
// DOCS_EXAMPLES_OUT=<file> also writes what each command printed there,
// JSON pretty-printed as the document shows it, to help update the shown
// outputs after a change. DOCS_EXAMPLES_UPDATE=1 rewrites, in
// docs/index.md, the shown outputs of demo commands that answered otherwise
// (keeping the document's placeholders, abridgements, times and run-time
// uuids where they still fit; a read-only command is recorded once the world
// is idle); review the diff. DOCS_EXAMPLES_URL=<url> runs the examples
// against that SAPI instead (a fresh `npm start`, say) and starts none; the
// demo blocks are then left out.

import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import t, { type Test } from 'tap';

import { demoFixedUuids, startDemoWorld, type DemoWorld } from '../../tools/demo-world.js';
import { parseExamples, pipedInto, type DocCommand, type DocExample } from '../lib/doc-examples.js';
import { formatJson, matchJson, matchText, mergeShown, unbind, type MatchState } from '../lib/doc-match.js';
import { startSapi, testLog } from '../lib/harness.js';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'index.md');

const PIPE_OK = new Set(['grep', 'head', 'tail', 'sort', 'wc']);

const VOLATILE_HEADERS = new Set(['date', 'x-request-id', 'x-server-name']);

/** How long a read-only demo command is asked again before its answer counts. */
const DEMO_RETRY_MS = 30_000;
/** A CN's agent install in the docs' demo world: long enough to act while one runs. */
const DEMO_TASK_MS = 1000;

interface RunResult {
    code: number;
    stdout: string;
    stderr: string;
}

function sh(command: string): Promise<RunResult> {
    return new Promise((resolve) => {
        execFile('bash', ['-o', 'pipefail', '-c', command], { timeout: 60_000 }, (err, stdout, stderr) => {
            const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
            resolve({ code, stdout, stderr });
        });
    });
}

function curlPresent(): Promise<boolean> {
    return sh('curl --version').then((r) => r.code === 0);
}

/** The last header block of a curl -D dump (after any 100 Continue). */
function lastHeaderBlock(dump: string): { status: number; headers: Map<string, string> } {
    const blocks = dump.split(/\r?\n\r?\n/).filter((b) => /^HTTP\//.test(b));
    const last = blocks[blocks.length - 1] ?? '';
    const [statusLine = '', ...rest] = last.split(/\r?\n/);
    const headers = new Map<string, string>();
    for (const h of rest) {
        const colon = h.indexOf(':');
        if (colon > 0) {
            headers.set(h.slice(0, colon).trim().toLowerCase(), h.slice(colon + 1).trim());
        }
    }
    return { status: Number(/^HTTP\/[\d.]+ (\d{3})/.exec(statusLine)?.[1] ?? 0), headers };
}

/** curl's output split into the header blocks -i printed and the body. */
function splitOutput(stdout: string): { head: string; body: string } {
    let out = stdout;
    let head = '';
    while (/^HTTP\//.test(out)) {
        const end = /\r?\n\r?\n/.exec(out);
        if (!end) {
            head += out;
            out = '';
            break;
        }
        head += `${out.slice(0, end.index)}\n\n`;
        out = out.slice(end.index + end[0].length);
    }
    return { head: head.replace(/\r/g, '').trim(), body: out.trim() };
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
    try {
        return { ok: true, value: JSON.parse(text) };
    } catch {
        return { ok: false };
    }
}

function shownCode(body: string): string | undefined {
    const j = parseJson(body);
    if (j.ok && j.value && typeof j.value === 'object' && !Array.isArray(j.value)) {
        const code = (j.value as Record<string, unknown>).code;
        return typeof code === 'string' ? code : undefined;
    }
    return undefined;
}

/** What a command printed, in the document's style: headers as sent, JSON indented by 2. */
function printed(cmd: DocCommand, stdout: string): string {
    const { head, body } = splitOutput(stdout);
    const j = parseJson(body);
    const text = j.ok ? JSON.stringify(j.value, null, 2) : body;
    return `## docs/index.md:${cmd.line}\n$ ${cmd.command}\n${head ? `${head}\n\n` : ''}${text}\n\n`;
}

async function runCommand(t: Test, url: string, ex: DocExample, cmd: DocCommand, dir: string, n: number): Promise<void> {
    const where = `docs/index.md:${cmd.line}`;
    const host = new URL(url).host;
    const dump = join(dir, `headers-${n}`);
    const command = cmd.command.replace(/localhost:8080/g, host).replace(/^curl /, `curl -D '${dump}' `);
    const r = await sh(command);
    if (process.env.DOCS_EXAMPLES_OUT) {
        appendFileSync(process.env.DOCS_EXAMPLES_OUT, printed(cmd, r.stdout));
    }
    const diag = { command: cmd.command, stdout: r.stdout, stderr: r.stderr };
    t.equal(r.code, 0, `${where}: exits 0`, diag);
    let got: { status: number; headers: Map<string, string> };
    try {
        got = lastHeaderBlock(readFileSync(dump, 'utf8'));
    } catch {
        t.fail(`${where}: curl got no answer`, diag);
        return;
    }

    const shown = cmd.shown;
    const code = shownCode(shown.body);
    if (shown.status !== undefined) {
        t.equal(got.status, shown.status, `${where}: answers ${shown.status}, as shown`, diag);
    } else if (ex.expect !== undefined) {
        t.equal(got.status, ex.expect, `${where}: answers ${ex.expect}, as marked`, diag);
    } else if (code !== undefined) {
        t.ok(got.status >= 400, `${where}: answers an error status for code ${code} (got ${got.status})`, diag);
    } else {
        t.ok(got.status >= 200 && got.status < 300, `${where}: answers 2xx (got ${got.status})`, diag);
    }

    for (const [name, value] of shown.headers) {
        const actual = got.headers.get(name.toLowerCase());
        if (VOLATILE_HEADERS.has(name.toLowerCase())) {
            t.ok(actual !== undefined, `${where}: sends ${name}`, diag);
        } else {
            t.equal(actual, value, `${where}: ${name}: ${value}, as shown`, diag);
        }
    }

    if (shown.body === '') {
        return;
    }
    const body = splitOutput(r.stdout).body;
    const want = parseJson(shown.body);
    if (want.ok) {
        const have = parseJson(body);
        t.ok(have.ok, `${where}: answers JSON`, diag);
        if (have.ok) {
            t.strictSame(have.value, want.value, `${where}: body is the one shown`, diag);
        }
    } else {
        t.equal(body, shown.body, `${where}: output is the one shown`, diag);
    }
}

/** A fresh SAPI in this process, as `npm start` makes it; resolves with its URL. */
async function inProcess(t: Test): Promise<string> {
    const h = await startSapi();
    t.teardown(() => h.close());
    // `npm start` logs at info; the examples show that level. Keep the
    // lines out of the test output.
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    for (const s of (h.ctx.log as unknown as { streams: { stream: NodeJS.WritableStream }[] }).streams) {
        s.stream = sink;
    }
    h.ctx.log.level('info');
    return h.url;
}

// ---- demo blocks

interface DemoRun {
    world: DemoWorld;
    section: string;
    st: MatchState;
}

/** A replacement of shown output lines in docs/index.md. */
interface Rewrite {
    lines: [number, number];
    text: string;
}

/** Whether a command only reads: no request body, no method other than GET. */
function readOnly(command: string): boolean {
    return !/(^|\s)(-d|--data[\w-]*)(\s|=|$)/.test(command) && !/(^|\s)(-X|--request)\s*(?!GET\b)[A-Z]/.test(command);
}

function statusProblem(ex: DocExample, cmd: DocCommand, status: number): string | undefined {
    const shown = cmd.shown;
    const code = shownCode(shown.body);
    if (shown.status !== undefined) {
        return status === shown.status ? undefined : `answered ${status}, shown ${shown.status}`;
    }
    if (ex.expect !== undefined) {
        return status === ex.expect ? undefined : `answered ${status}, marked ${ex.expect}`;
    }
    if (code !== undefined) {
        return status >= 400 ? undefined : `answered ${status}, not an error status for code ${code}`;
    }
    return status >= 200 && status < 300 ? undefined : `answered ${status}, not 2xx`;
}

/** What differs between a demo command's run and the document. */
function demoProblems(ex: DocExample, cmd: DocCommand, r: RunResult, got: { status: number; headers: Map<string, string> } | null, st: MatchState) {
    const problems: string[] = [];
    if (r.code !== 0) problems.push(`exited ${r.code}`);
    if (!got) return { problems: [...problems, 'curl got no answer'], body: [] as string[] };
    const status = statusProblem(ex, cmd, got.status);
    if (status) problems.push(status);
    for (const [name, value] of cmd.shown.headers) {
        const actual = got.headers.get(name.toLowerCase());
        if (VOLATILE_HEADERS.has(name.toLowerCase()) ? actual === undefined : actual !== value) {
            problems.push(`header ${name}: ${String(actual)}, shown ${value}`);
        }
    }
    const body: string[] = [];
    if (cmd.shown.body !== '') {
        const text = splitOutput(r.stdout).body;
        const want = parseJson(cmd.shown.body);
        if (want.ok) {
            const have = parseJson(text);
            body.push(...(have.ok ? matchJson(want.value, have.value, st) : [`answered no JSON: ${text}`]));
        } else if (!matchText(cmd.shown.body, text, st)) {
            body.push(`output ${JSON.stringify(text)}, shown ${JSON.stringify(cmd.shown.body)}`);
        }
    }
    return { problems, body };
}

/** The shown output a demo command's answer calls for (see mergeShown). */
function recorded(cmd: DocCommand, stdout: string, st: MatchState): string {
    const text = splitOutput(stdout).body;
    const want = parseJson(cmd.shown.body);
    const have = parseJson(text);
    if (want.ok && have.ok) {
        return formatJson(mergeShown(want.value, have.value, st));
    }
    return unbind(text, st);
}

async function runDemoCommand(t: Test, demo: DemoRun, ex: DocExample, cmd: DocCommand, dir: string, n: number, rewrites: Rewrite[]): Promise<void> {
    const where = `docs/index.md:${cmd.line}`;
    const host = new URL(demo.world.url).host;
    const dump = join(dir, `headers-${n}`);
    const update = process.env.DOCS_EXAMPLES_UPDATE === '1';
    const retry = readOnly(cmd.command);
    const deadline = Date.now() + DEMO_RETRY_MS;
    let waited = false;
    for (;;) {
        const st: MatchState = { fixed: demo.st.fixed, bindings: new Map(demo.st.bindings) };
        let command = cmd.command.replace(/localhost:8080/g, host).replace(/^curl /, `curl -D '${dump}' `);
        for (const [shown, answered] of st.bindings) {
            command = command.replace(new RegExp(shown, 'gi'), answered);
        }
        rmSync(dump, { force: true });
        const r = await sh(command);
        let got: { status: number; headers: Map<string, string> } | null;
        try {
            got = lastHeaderBlock(readFileSync(dump, 'utf8'));
        } catch {
            got = null;
        }
        const { problems, body } = demoProblems(ex, cmd, r, got, st);
        const ok = problems.length === 0 && body.length === 0;
        let again = false;
        if (!ok && retry) {
            if (update) {
                // Re-recording: take the answer once nothing runs any more.
                again = !waited;
                if (again) {
                    waited = true;
                    await demo.world.idle();
                    await new Promise((res) => setTimeout(res, 500));
                }
            } else if (Date.now() < deadline) {
                again = true;
                await new Promise((res) => setTimeout(res, 100));
            }
        }
        if (again) {
            continue;
        }
        demo.st.bindings = st.bindings;
        if (process.env.DOCS_EXAMPLES_OUT) {
            appendFileSync(process.env.DOCS_EXAMPLES_OUT, printed(cmd, r.stdout));
        }
        const diag = { command, stdout: r.stdout, stderr: r.stderr };
        t.same(problems, [], `${where}: runs and answers the status shown`, diag);
        if (update && body.length > 0 && cmd.shown.status === undefined) {
            rewrites.push({ lines: cmd.outputLines, text: recorded(cmd, r.stdout, st) });
            t.comment(`${where}: shown output rewritten (${body[0]})`);
        } else {
            t.same(body, [], `${where}: answers what is shown`, diag);
        }
        return;
    }
}

/** Writes the recorded outputs into docs/index.md, from the bottom up. */
function applyRewrites(rewrites: Rewrite[]): void {
    if (rewrites.length === 0) {
        return;
    }
    const lines = readFileSync(DOC, 'utf8').split('\n');
    for (const w of [...rewrites].sort((a, b) => b.lines[0] - a.lines[0])) {
        const [from, to] = w.lines;
        lines.splice(from - 1, to - from, ...w.text.split('\n'));
    }
    writeFileSync(DOC, lines.join('\n'));
}

t.test('docs/index.md curl examples', async (t) => {
    const examples = parseExamples(readFileSync(DOC, 'utf8'));
    t.ok(examples.length >= 40, `the document has its examples (${examples.length})`);

    t.test('examples pipe only into plain tools', async (t) => {
        for (const ex of examples) {
            for (const cmd of ex.commands) {
                for (const tool of pipedInto(cmd.command)) {
                    t.ok(PIPE_OK.has(tool), `docs/index.md:${cmd.line}: pipes into ${tool}`, { allowed: [...PIPE_OK] });
                }
            }
        }
    });

    // Without curl there is nothing to run the examples with: say so, loudly.
    const skip = (await curlPresent()) ? false : 'curl is not installed: the examples are curl commands';
    t.test('examples run in document order and answer as shown', { skip }, async (t) => {
        const url = process.env.DOCS_EXAMPLES_URL || (await inProcess(t));
        const dir = mkdtempSync(join(tmpdir(), 'sapi-doc-examples-'));
        t.teardown(() => rmSync(dir, { recursive: true, force: true }));

        if (process.env.DOCS_EXAMPLES_OUT) {
            writeFileSync(process.env.DOCS_EXAMPLES_OUT, '');
        }
        let n = 0;
        let ran = 0;
        // The demo world of the current `#` section, started at its first demo block.
        const demo: { run: DemoRun | null } = { run: null };
        t.teardown(() => demo.run?.world.close());
        const rewrites: Rewrite[] = [];
        for (const ex of examples) {
            if (ex.skip !== undefined) {
                t.comment(`docs/index.md:${ex.line} (${ex.heading}): skipped: ${ex.skip}`);
                continue;
            }
            if (ex.demo && process.env.DOCS_EXAMPLES_URL) {
                t.comment(`docs/index.md:${ex.line} (${ex.heading}): left out: runs in the demo world, and DOCS_EXAMPLES_URL is set`);
                continue;
            }
            if (ex.demo && demo.run?.section !== ex.section) {
                await demo.run?.world.close();
                demo.run = null;
                const world = await startDemoWorld({ port: 0, taskDurationMs: DEMO_TASK_MS, log: testLog() });
                demo.run = { world, section: ex.section, st: { fixed: demoFixedUuids(), bindings: new Map() } };
            }
            for (const cmd of ex.commands) {
                if (ex.demo && demo.run) {
                    await runDemoCommand(t, demo.run, ex, cmd, dir, n++, rewrites);
                } else {
                    await runCommand(t, url, ex, cmd, dir, n++);
                }
                ran++;
            }
        }
        applyRewrites(rewrites);
        t.ok(ran >= 40, `ran the examples (${ran} commands)`);
    });
});
