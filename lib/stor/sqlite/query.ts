// Filter tree → parameterised SQL WHERE clause. Values are always bound
// parameters; field names must be index columns of the bucket.

import type { BucketDef } from '../buckets.js';
import type { Filter } from '../store.js';
import { ident } from './schema.js';

export interface Where {
    sql: string;
    params: string[];
}

export function whereClause(def: BucketDef, filter: Filter): Where {
    const params: string[] = [];
    const walk = (f: Filter): string => {
        if ('all' in f) {
            return '1';
        }
        if ('eq' in f) {
            params.push(f.eq.value);
            return `${column(def, f.eq.field)} = ?`;
        }
        if ('in' in f) {
            if (f.in.values.length === 0) {
                return '0';
            }
            params.push(...f.in.values);
            return `${column(def, f.in.field)} IN (${f.in.values.map(() => '?').join(', ')})`;
        }
        return f.and.length === 0 ? '1' : f.and.map((p) => `(${walk(p)})`).join(' AND ');
    };
    return { sql: walk(filter), params };
}

function column(def: BucketDef, field: string): string {
    if (!(field in def.index)) {
        throw new Error(`${field} is not an indexed field of ${def.name}`);
    }
    return ident(field);
}
