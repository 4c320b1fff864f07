// How the shown output of an `example: demo` block of docs/index.md is
// compared with what the demo world answered, and how it is rewritten when
// the answers change (DOCS_EXAMPLES_UPDATE). The rules, which docs/index.md
// repeats at its top:
//
// * A JSON string that begins and ends with `…` stands for any value
//   (`"duration_ms": "…"`, `"items": "… the two items …"`).
// * An object with a key that begins with `…` is abridged: only the keys it
//   shows are compared (`"… other fields …": "…"`).
// * An ISO 8601 time (`2026-11-25T01:58:55.410Z`) stands for any time, also
//   inside a longer string.
// * A uuid the world was not built with stands for the one answered in its
//   place: SAPI made it at run time (a rollout's uuid, a CNAPI task's). It is
//   bound there, the first time it is shown, and later commands and outputs
//   of the section use the answered uuid in its stead. A uuid the world was
//   built with must be answered as shown.
// Everything else must be equal (object key order aside).

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const TIME = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?Z';
const TOKEN = new RegExp(`(${TIME})|(${UUID})`, 'gi');
const ELLIPSIS = '…';

export interface MatchState {
    /** The world's own uuids (lower case). */
    fixed: ReadonlySet<string>;
    /** Shown uuid → answered uuid, for uuids made at run time. */
    bindings: Map<string, string>;
}

/** A string that stands for any value. */
export function isPlaceholder(v: unknown): boolean {
    return typeof v === 'string' && v.length >= 1 && v.startsWith(ELLIPSIS) && v.endsWith(ELLIPSIS);
}

function isAbridgeKey(k: string): boolean {
    return k.startsWith(ELLIPSIS);
}

function isObject(v: unknown): v is Record<string, unknown> {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function escape(s: string): string {
    return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Whether `actual` is what the shown string stands for; the uuids it binds
 * are added to `bindings` (only when it matches).
 */
export function matchText(shown: string, actual: string, st: MatchState): boolean {
    const groups: string[] = [];
    let re = '';
    let last = 0;
    for (const m of shown.matchAll(TOKEN)) {
        re += escape(shown.slice(last, m.index));
        last = m.index + m[0].length;
        if (m[1] !== undefined) {
            re += TIME;
            continue;
        }
        const u = m[0].toLowerCase();
        const bound = st.bindings.get(u);
        if (bound !== undefined || st.fixed.has(u)) {
            re += escape(bound ?? m[0]);
            continue;
        }
        const seen = groups.indexOf(u);
        if (seen >= 0) {
            re += `\\k<u${seen}>`;
        } else {
            groups.push(u);
            re += `(?<u${groups.length - 1}>${UUID})`;
        }
    }
    re += escape(shown.slice(last));
    const m = new RegExp(`^${re}$`, 'i').exec(actual);
    if (!m) {
        return false;
    }
    const found = groups.map((_, i) => (m.groups?.[`u${i}`] ?? '').toLowerCase());
    // A uuid of the world where the document shows one made at run time: not the same thing.
    if (found.some((f) => st.fixed.has(f))) {
        return false;
    }
    groups.forEach((g, i) => st.bindings.set(g, found[i] as string));
    return true;
}

/** The differences between a shown JSON value and the answer, by path ('' when none). */
export function matchJson(shown: unknown, actual: unknown, st: MatchState, path = '$'): string[] {
    if (isPlaceholder(shown)) {
        return [];
    }
    if (typeof shown === 'string') {
        return typeof actual === 'string' && matchText(shown, actual, st)
            ? []
            : [`${path}: shown ${JSON.stringify(shown)}, answered ${JSON.stringify(actual)}`];
    }
    if (Array.isArray(shown)) {
        if (!Array.isArray(actual)) {
            return [`${path}: shown an array, answered ${JSON.stringify(actual)}`];
        }
        if (shown.length !== actual.length) {
            return [`${path}: shown ${shown.length} elements, answered ${actual.length}: ${JSON.stringify(actual)}`];
        }
        return shown.flatMap((s, i) => matchJson(s, actual[i], st, `${path}[${i}]`));
    }
    if (isObject(shown)) {
        if (!isObject(actual)) {
            return [`${path}: shown an object, answered ${JSON.stringify(actual)}`];
        }
        const out: string[] = [];
        const keys = Object.keys(shown);
        for (const k of keys) {
            if (isAbridgeKey(k)) continue;
            if (!(k in actual)) {
                out.push(`${path}.${k}: shown, not answered`);
                continue;
            }
            out.push(...matchJson(shown[k], actual[k], st, `${path}.${k}`));
        }
        if (!keys.some(isAbridgeKey)) {
            for (const k of Object.keys(actual)) {
                if (!(k in shown)) out.push(`${path}.${k}: answered (${JSON.stringify(actual[k])}), not shown`);
            }
        }
        return out;
    }
    return Object.is(shown, actual) ? [] : [`${path}: shown ${JSON.stringify(shown)}, answered ${JSON.stringify(actual)}`];
}

// ---- rewriting shown outputs

/** `text` with every answered uuid that is bound written as the document shows it. */
export function unbind(text: string, st: MatchState): string {
    const back = new Map([...st.bindings].map(([shown, answered]) => [answered, shown]));
    return text.replace(new RegExp(UUID, 'gi'), (u) => back.get(u.toLowerCase()) ?? u);
}

/**
 * The value to show for an answer: what the document shows wherever that
 * still matches (its placeholders, times, abridgements), the answer
 * elsewhere (with bound uuids written as the document has them).
 */
export function mergeShown(shown: unknown, actual: unknown, st: MatchState): unknown {
    if (matchJson(shown, actual, { fixed: st.fixed, bindings: new Map(st.bindings) }).length === 0) {
        return shown;
    }
    if (isObject(shown) && isObject(actual)) {
        const abridged = Object.keys(shown).some(isAbridgeKey);
        const out: Record<string, unknown> = {};
        const keys = abridged ? Object.keys(shown) : Object.keys(actual);
        for (const k of keys) {
            if (isAbridgeKey(k)) out[k] = shown[k];
            else if (k in actual) out[k] = k in shown ? mergeShown(shown[k], actual[k], st) : answered(actual[k], st);
        }
        return out;
    }
    if (Array.isArray(shown) && Array.isArray(actual) && shown.length === actual.length) {
        return shown.map((s, i) => mergeShown(s, actual[i], st));
    }
    return answered(actual, st);
}

function answered(v: unknown, st: MatchState): unknown {
    return JSON.parse(unbind(JSON.stringify(v), st)) as unknown;
}

const WIDTH = 120;

/**
 * JSON as the document writes it: indented by 2, an object or array kept on
 * one line when it fits in WIDTH columns (never the outermost one).
 */
export function formatJson(v: unknown, indent = 0, lead = 0): string {
    if (typeof v !== 'object' || v === null) {
        return JSON.stringify(v);
    }
    const entries: [string | null, unknown][] = Array.isArray(v) ? v.map((x) => [null, x]) : Object.entries(v);
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    if (entries.length === 0) {
        return `${open}${close}`;
    }
    const key = (k: string | null): string => (k === null ? '' : `${JSON.stringify(k)}: `);
    if (indent > 0) {
        const flat = `${open}${entries.map(([k, x]) => `${key(k)}${formatJson(x, Infinity)}`).join(', ')}${close}`;
        if (indent === Infinity || indent + lead + flat.length <= WIDTH) {
            return flat;
        }
    }
    const pad = ' '.repeat(indent + 2);
    const lines = entries.map(([k, x]) => `${pad}${key(k)}${formatJson(x, indent + 2, key(k).length)}`);
    return `${open}\n${lines.join(',\n')}\n${' '.repeat(indent)}${close}`;
}
