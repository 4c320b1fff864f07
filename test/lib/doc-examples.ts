// Reads the curl examples out of docs/index.md, so that a test can run
// them. The rules, which docs/index.md repeats at its top:
//
// * An example is a fenced code block whose first line starts with
//   `$ curl`. Blocks that start any other way (a bare JSON body, `$ node`)
//   are illustrations and are never run.
// * Inside an example, each line that starts with `$ ` begins a command.
//   The command goes on over the next lines while a line ends with `\` or
//   while a single-quoted argument is still open (a JSON body written over
//   several lines). Lines starting with `# ` are remarks. Every other line,
//   up to the next command, is the output the command is shown to give.
// * An HTML comment `<!-- example: ... -->` on the line just before the
//   opening fence (blank lines between are allowed) tells the runner
//   something about the whole block:
//     `skip (<reason>)`  the block is not run; the reason must say what it
//                        needs (full mode, CNAPI, ...) or why it cannot run
//                        in order (it is one-way, say).
//     `expect <status>`  every command of the block that does not show an
//                        `HTTP/1.1` status line must answer this status.
//     `demo`             the block runs against the demo world (`npm run
//                        demo`, tools/demo-world.ts) instead of the
//                        proto-mode SAPI: a fresh world for each `#` section,
//                        the section's demo blocks in order. Its shown
//                        outputs follow the rules of test/lib/doc-match.ts
//                        (placeholders, times, uuids made at run time), and
//                        its read-only commands are asked again until they
//                        answer as shown (the world works on meanwhile).
//   Anything else in such a comment is a mistake, and the parser says so.

export interface ShownOutput {
    /** Status of the `HTTP/1.1 NNN ...` line the example shows, if any. */
    status?: number;
    /** Header lines shown under the status line, as [name, value]. */
    headers: [string, string][];
    /** Shown body text, trimmed; '' when none is shown. */
    body: string;
}

export interface DocCommand {
    /** The shell command, continuation lines joined as the shell would see them. */
    command: string;
    /** 1-based line of docs/index.md where the command starts. */
    line: number;
    shown: ShownOutput;
    /** 1-based lines of docs/index.md that hold the shown output, [from, to) (from = to: none). */
    outputLines: [number, number];
}

export interface DocExample {
    /** 1-based line of the opening fence. */
    line: number;
    /** The nearest `#` or `##` heading above the block (the route, for the reference). */
    heading: string;
    /** The nearest `#` heading above the block (the demo world is fresh for each). */
    section: string;
    skip?: string;
    expect?: number;
    demo?: boolean;
    commands: DocCommand[];
}

const MARKER = /^<!--\s*example:\s*(.*?)\s*-->$/;

/** Parses one `<!-- example: ... -->` marker into the example's options. */
function applyMarker(text: string, ex: DocExample, where: number): void {
    const skip = /^skip\s*\((.+)\)$/.exec(text);
    if (skip?.[1]) {
        ex.skip = skip[1];
        return;
    }
    const expect = /^expect\s+(\d{3})$/.exec(text);
    if (expect?.[1]) {
        ex.expect = Number(expect[1]);
        return;
    }
    if (text === 'demo') {
        ex.demo = true;
        return;
    }
    throw new Error(`docs/index.md:${where}: unknown example marker "${text}" (use "skip (<reason>)", "expect <status>" or "demo")`);
}

/** Whether a single-quoted argument is still open at the end of `text`, as the shell reads it. */
function quoteOpen(text: string): boolean {
    let open = false;
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (c === "'") {
            open = !open;
        } else if (c === '\\' && !open) {
            i++;
        }
    }
    return open;
}

function parseShown(lines: string[]): ShownOutput {
    const out = [...lines];
    while (out.length > 0 && (out[out.length - 1] ?? '').trim() === '') {
        out.pop();
    }
    const shown: ShownOutput = { headers: [], body: '' };
    const statusLine = /^HTTP\/[\d.]+ (\d{3})\b/.exec(out[0] ?? '');
    if (statusLine?.[1]) {
        shown.status = Number(statusLine[1]);
        out.shift();
        while (out.length > 0 && (out[0] ?? '').trim() !== '') {
            const h = out.shift() ?? '';
            const colon = h.indexOf(':');
            shown.headers.push([h.slice(0, colon).trim(), h.slice(colon + 1).trim()]);
        }
    }
    shown.body = out.join('\n').trim();
    return shown;
}

/** Every curl example of the document, in document order. */
export function parseExamples(markdown: string): DocExample[] {
    const lines = markdown.split('\n');
    const examples: DocExample[] = [];
    let heading = '';
    let section = '';
    for (let i = 0; i < lines.length; i++) {
        const line = lines[i] ?? '';
        if (/^#{1,2}\s/.test(line)) {
            heading = line.replace(/^#+\s*/, '');
            if (line.startsWith('# ')) {
                section = heading;
            }
            continue;
        }
        if (!/^\s*```/.test(line)) {
            continue;
        }
        // A fenced block: find its end.
        let end = i + 1;
        while (end < lines.length && !/^\s*```/.test(lines[end] ?? '')) {
            end++;
        }
        const body = lines.slice(i + 1, end);
        const opening = i;
        i = end;
        if (!/^\$ curl\b/.test(body[0] ?? '')) {
            continue;
        }
        const ex: DocExample = { line: opening + 1, heading, section, commands: [] };
        // The marker, if any, is the last non-blank line before the fence.
        let m = opening - 1;
        while (m >= 0 && (lines[m] ?? '').trim() === '') {
            m--;
        }
        const marker = MARKER.exec((lines[m] ?? '').trim());
        if (marker) {
            applyMarker(marker[1] ?? '', ex, m + 1);
        }
        let j = 0;
        while (j < body.length) {
            const text = body[j] ?? '';
            if (!text.startsWith('$ ')) {
                j++; // remarks (and stray lines before the first command) are not output of anything
                continue;
            }
            const start = opening + 2 + j;
            let command = text.slice(2);
            while ((command.endsWith('\\') || quoteOpen(command)) && j + 1 < body.length) {
                j++;
                command = command.endsWith('\\') ? `${command.slice(0, -1)} ${(body[j] ?? '').trim()}` : `${command}\n${body[j] ?? ''}`;
            }
            j++;
            const output: string[] = [];
            const from = opening + 2 + j;
            while (j < body.length && !(body[j] ?? '').startsWith('$ ') && !(body[j] ?? '').startsWith('# ')) {
                output.push(body[j] ?? '');
                j++;
            }
            let to = from + output.length;
            while (to > from && (lines[to - 2] ?? '').trim() === '') {
                to--;
            }
            ex.commands.push({ command, line: start, shown: parseShown(output), outputLines: [from, to] });
        }
        examples.push(ex);
    }
    return examples;
}

/** The programs a command pipes into (`a | b | c` gives ["b", "c"]), quotes respected. */
export function pipedInto(command: string): string[] {
    const out: string[] = [];
    let quote: string | null = null;
    for (let i = 0; i < command.length; i++) {
        const c = command[i];
        if (quote) {
            if (c === quote) {
                quote = null;
            }
            continue;
        }
        if (c === "'" || c === '"') {
            quote = c;
        } else if (c === '|' && command[i + 1] === '|') {
            i++; // `||` runs a second command; it is not a pipe
        } else if (c === '|') {
            const rest = command.slice(i + 1).trimStart();
            out.push(/^[^\s|;&]+/.exec(rest)?.[0] ?? '');
        }
    }
    return out;
}
