// SQLite tables and indexes, derived from the bucket definitions.
//
// One table per bucket: `seq` (creation order), `uuid`, `etag`, `value`
// (the JSON object) and one real column per index field, each indexed.

import type { BucketDef } from '../buckets.js';

export function indexColumns(def: BucketDef): string[] {
    return Object.keys(def.index).filter((f) => f !== 'uuid');
}

/** Quote an identifier we defined ourselves (never user input). */
export function ident(name: string): string {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) {
        throw new Error(`bad identifier ${name}`);
    }
    return `"${name}"`;
}

export function createStatements(def: BucketDef): string[] {
    const table = ident(def.name);
    const cols = indexColumns(def)
        .map((c) => `${ident(c)} TEXT`)
        .join(', ');
    const stmts = [
        `CREATE TABLE IF NOT EXISTS ${table} (` +
            'seq INTEGER PRIMARY KEY AUTOINCREMENT, ' +
            'uuid TEXT NOT NULL UNIQUE, ' +
            'etag TEXT NOT NULL, ' +
            'value TEXT NOT NULL' +
            (cols ? `, ${cols}` : '') +
            ')',
    ];
    for (const c of indexColumns(def)) {
        stmts.push(`CREATE INDEX IF NOT EXISTS ${ident(`${def.name}_${c}_idx`)} ON ${table} (${ident(c)}, uuid)`);
    }
    for (const cols of def.compound ?? []) {
        const name = ident(`${def.name}_${cols.join('_')}_idx`);
        stmts.push(`CREATE INDEX IF NOT EXISTS ${name} ON ${table} (${[...cols, 'uuid'].map(ident).join(', ')})`);
    }
    return stmts;
}

/** Columns a table has now (to add index columns on a bucket upgrade). */
export function missingColumns(def: BucketDef, existing: Set<string>): string[] {
    return indexColumns(def).filter((c) => !existing.has(c));
}
