// Plain-text tables and small formatters for sapiadm's default output.

export interface Column<T> {
    header: string;
    get: (row: T) => unknown;
}

function cell(v: unknown): string {
    if (v === undefined || v === null || v === '') {
        return '-';
    }
    if (typeof v === 'string') {
        return v;
    }
    return typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
}

/** Left-aligned columns separated by two spaces, with an upper-case header. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
    const grid = [columns.map((c) => c.header.toUpperCase()), ...rows.map((r) => columns.map((c) => cell(c.get(r))))];
    const widths = columns.map((_, i) => Math.max(...grid.map((line) => (line[i] ?? '').length)));
    return grid
        .map((line) =>
            line
                .map((text, i) => (i === line.length - 1 ? text : text.padEnd(widths[i] ?? 0)))
                .join('  ')
                .trimEnd(),
        )
        .join('\n');
}

/** 850 → "850ms", 12_300 → "12.3s", 125_000 → "2m05s". */
export function duration(ms: number | undefined): string {
    if (ms === undefined || !Number.isFinite(ms)) {
        return '-';
    }
    if (ms < 1000) {
        return `${Math.round(ms)}ms`;
    }
    if (ms < 60_000) {
        return `${(ms / 1000).toFixed(1)}s`;
    }
    const s = Math.round(ms / 1000);
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** `params.<key>` of an object, when it is a string. */
export function param(obj: { params?: Record<string, unknown> }, key: string): string | undefined {
    const v = obj.params?.[key];
    return typeof v === 'string' ? v : undefined;
}

export function plural(n: number, word: string): string {
    return `${n} ${word}${n === 1 ? '' : 's'}`;
}
