// Comments in lib/, bin/, schemas/ and bench/ state their rules in their own
// words: no section numbers (§2.7), defect numbers (D7), JIRA ids
// (TRITON-416), RFD numbers, or names of documents that are not in this
// repository. A new engineer has only the code and docs/. A `*.md` path is
// fine when the file exists here (docs/index.md, README.md).
//
// Only comments are checked (found with the TypeScript parser, so URLs and
// `//` inside strings or templates are not mistaken for comments); strings
// are code and are left to review.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';
import ts from 'typescript';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIRS = ['lib', 'bin', 'schemas', 'bench'];

/** References to documents or trackers a reader of this repository cannot open. */
const FORBIDDEN = /§|sapi-api\.md|agents-contract|RFD[- ]?\d+|style\.md|\bD[0-9]{1,2}\b|\b(?:SAPI|TRITON|AGENT|MANTA|CNAPI|OS)-[0-9]+/g;

/** Markdown file names or paths mentioned in a comment. */
const MD_REF = /[\w./-]*\.md\b/g;

interface Finding {
    file: string;
    line: number;
    match: string;
    text: string;
}

function sourceFiles(dir: string): string[] {
    if (!existsSync(dir)) {
        return [];
    }
    const out: string[] = [];
    for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) {
            out.push(...sourceFiles(p));
        } else if (/\.(?:[cm]?ts|[cm]?js)$/.test(name) && !name.endsWith('.d.ts')) {
            out.push(p);
        }
    }
    return out;
}

/** Every comment of a source text, with its start offset. */
function comments(sf: ts.SourceFile): { pos: number; text: string }[] {
    const text = sf.getFullText();
    const seen = new Map<number, string>();
    const add = (ranges: ts.CommentRange[] | undefined): void => {
        for (const r of ranges ?? []) {
            seen.set(r.pos, text.slice(r.pos, r.end));
        }
    };
    const visit = (node: ts.Node): void => {
        add(ts.getLeadingCommentRanges(text, node.pos));
        add(ts.getTrailingCommentRanges(text, node.end));
        ts.forEachChild(node, visit);
    };
    visit(sf);
    return [...seen.entries()].sort(([a], [b]) => a - b).map(([pos, t]) => ({ pos, text: t }));
}

/** Whether a `*.md` reference names a file of this repository. */
function mdExists(ref: string, fromFile: string): boolean {
    const candidates = ref.includes('/')
        ? [join(ROOT, ref), join(dirname(fromFile), ref)]
        : [join(ROOT, 'docs', ref), join(ROOT, ref), join(dirname(fromFile), ref)];
    return candidates.some((p) => existsSync(p));
}

function findingsOf(file: string, source: string): Finding[] {
    const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
    const out: Finding[] = [];
    const at = (pos: number, match: string, text: string): void => {
        out.push({ file: relative(ROOT, file), line: sf.getLineAndCharacterOfPosition(pos).line + 1, match, text });
    };
    for (const c of comments(sf)) {
        const lineOf = (i: number): string => {
            const start = c.text.lastIndexOf('\n', i) + 1;
            const end = c.text.indexOf('\n', i);
            return c.text.slice(start, end === -1 ? undefined : end).trim();
        };
        for (const m of c.text.matchAll(FORBIDDEN)) {
            at(c.pos + m.index, m[0], lineOf(m.index));
        }
        for (const m of c.text.matchAll(MD_REF)) {
            // Names already caught above are not reported twice.
            if (!mdExists(m[0], file) && !new RegExp(FORBIDDEN.source).test(m[0])) {
                at(c.pos + m.index, `${m[0]} (not in this repository)`, lineOf(m.index));
            }
        }
    }
    return out;
}

t.test('the checker finds references in comments only', async (t) => {
    const src = [
        '// Modes (sapi-api.md §1.2) and D7.',
        "const s = 'CNAPI-727 http://x//y';",
        '/** TRITON-416: forget a server. See docs/index.md and docs/nowhere.md. */',
        'const u = `${s}//D9`;',
        'const v = 1; // RFD 82',
        '',
    ].join('\n');
    const found = findingsOf(join(ROOT, 'lib', 'example.ts'), src).map((f) => `${f.line}:${f.match}`);
    t.strictSame(found, ['1:sapi-api.md', '1:§', '1:D7', '3:TRITON-416', '3:docs/nowhere.md (not in this repository)', '5:RFD 82']);
});

t.test(`comments in ${DIRS.join('/, ')}/ cite no document a reader does not have`, async (t) => {
    const files = DIRS.flatMap((d) => sourceFiles(join(ROOT, d)));
    t.ok(files.length > 0, 'found source files');
    const findings = files.flatMap((f) => findingsOf(f, readFileSync(f, 'utf8')));
    t.strictSame(
        findings.map((f) => `${f.file}:${f.line}: ${f.match} — ${f.text}`),
        [],
        'state the rule itself instead of pointing at a section, defect number, ticket or missing document',
    );
});
