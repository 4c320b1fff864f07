// Store Filter tree → ldap-filter objects → Moray filter string.
//
// Values only ever go through the ldap-filter classes, whose toString()
// escapes `*`, `(`, `)`, `\` and NUL (RFC 4515), so a value never becomes a
// wildcard or breaks out of its clause.

import { createRequire } from 'node:module';

import { indexFieldValue, type BucketDef } from '../buckets.js';
import type { Filter, JsonObject } from '../store.js';

const require = createRequire(import.meta.url);

export interface LdapFilter {
    readonly type: string;
    toString(): string;
}

interface LdapFilterModule {
    EqualityFilter: new (o: { attribute: string; value: string }) => LdapFilter;
    PresenceFilter: new (o: { attribute: string }) => LdapFilter;
    GreaterThanEqualsFilter: new (o: { attribute: string; value: string }) => LdapFilter;
    AndFilter: new (o: { filters: LdapFilter[] }) => LdapFilter;
    OrFilter: new (o: { filters: LdapFilter[] }) => LdapFilter;
    NotFilter: new (o: { filter: LdapFilter }) => LdapFilter;
    parse(s: string): LdapFilter;
}

const ldap = require('ldap-filter') as LdapFilterModule;

/** The field every stored object has (and every bucket indexes). */
const KEY_FIELD = 'uuid';

function checkField(field: string, def?: BucketDef): void {
    if (def && !(field in def.index)) {
        throw new Error(`${field} is not an indexed field of ${def.name}`);
    }
    if (!/^[a-zA-Z_][-_a-zA-Z0-9]*$/.test(field)) {
        throw new Error(`bad filter field name ${JSON.stringify(field)}`);
    }
}

const everything = (): LdapFilter => new ldap.PresenceFilter({ attribute: KEY_FIELD });
const nothing = (): LdapFilter => new ldap.NotFilter({ filter: everything() });

/**
 * The ldap-filter object for `f`. With `def`, every field must be an index
 * field of that bucket (as the SQLite backend requires).
 */
export function toLdapFilter(f: Filter, def?: BucketDef): LdapFilter {
    if ('all' in f) {
        return everything();
    }
    if ('eq' in f) {
        checkField(f.eq.field, def);
        return new ldap.EqualityFilter({ attribute: f.eq.field, value: f.eq.value });
    }
    if ('in' in f) {
        checkField(f.in.field, def);
        const parts = f.in.values.map((value) => new ldap.EqualityFilter({ attribute: f.in.field, value }));
        if (parts.length === 0) {
            return nothing();
        }
        return parts.length === 1 ? (parts[0] as LdapFilter) : new ldap.OrFilter({ filters: parts });
    }
    const parts = f.and.map((p) => toLdapFilter(p, def)).filter((p) => !isEverything(p));
    if (parts.length === 0) {
        return everything();
    }
    return parts.length === 1 ? (parts[0] as LdapFilter) : new ldap.AndFilter({ filters: parts });
}

function isEverything(f: LdapFilter): boolean {
    return f.type === 'present' && (f as unknown as { attribute: string }).attribute === KEY_FIELD;
}

/** The Moray filter string for `f`; `{all: true}` is `(uuid=*)`. */
export function toLdapString(f: Filter, def?: BucketDef): string {
    return toLdapFilter(f, def).toString();
}

function conj(parts: LdapFilter[]): LdapFilter {
    const kept = parts.filter((p) => !isEverything(p));
    if (kept.length === 0) {
        return everything();
    }
    return kept.length === 1 ? (kept[0] as LdapFilter) : new ldap.AndFilter({ filters: kept });
}

/** `f` restricted to uuid > marker: `(&<f>(uuid>=marker)(!(uuid=marker)))`. */
export function afterMarker(f: Filter, marker: string, def?: BucketDef): string {
    return conj([
        toLdapFilter(f, def),
        new ldap.GreaterThanEqualsFilter({ attribute: KEY_FIELD, value: marker }),
        new ldap.NotFilter({ filter: new ldap.EqualityFilter({ attribute: KEY_FIELD, value: marker }) }),
    ]).toString();
}

/** `f` restricted to Moray rows with `_id` > id. */
export function afterId(f: Filter, id: number, def?: BucketDef): string {
    return conj([toLdapFilter(f, def), new ldap.GreaterThanEqualsFilter({ attribute: '_id', value: String(Math.floor(id) + 1) })]).toString();
}

// ---- helpers for filters the server cannot answer alone

/** Every field named in `f`. */
export function filterFields(f: Filter): Set<string> {
    const out = new Set<string>();
    const walk = (g: Filter): void => {
        if ('eq' in g) {
            out.add(g.eq.field);
        } else if ('in' in g) {
            out.add(g.in.field);
        } else if ('and' in g) {
            g.and.forEach(walk);
        }
    };
    walk(f);
    return out;
}

/** True when `f` can match nothing at all (an empty `in`). */
export function matchesNothing(f: Filter): boolean {
    if ('in' in f) {
        return f.in.values.length === 0;
    }
    if ('and' in f) {
        return f.and.some(matchesNothing);
    }
    return false;
}

/**
 * `f` without its clauses on `fields`. Filters are conjunctions, so the
 * result matches a superset of what `f` matches.
 */
export function withoutFields(f: Filter, fields: ReadonlySet<string>): Filter {
    if ('eq' in f) {
        return fields.has(f.eq.field) ? { all: true } : f;
    }
    if ('in' in f) {
        return fields.has(f.in.field) ? { all: true } : f;
    }
    if ('and' in f) {
        const parts = f.and.map((p) => withoutFields(p, fields)).filter((p) => !('all' in p));
        if (parts.length === 0) {
            return { all: true };
        }
        return parts.length === 1 ? (parts[0] as Filter) : { and: parts };
    }
    return f;
}

/**
 * Evaluate `f` against a stored value, as the SQLite backend does: index
 * fields hold strings (derived fields are read where the data really is);
 * anything else never equals a filter value.
 */
export function matchesValue(f: Filter, value: JsonObject, def: BucketDef): boolean {
    if ('all' in f) {
        return true;
    }
    if ('eq' in f) {
        return indexFieldValue(def, value, f.eq.field) === f.eq.value;
    }
    if ('in' in f) {
        const v = indexFieldValue(def, value, f.in.field);
        return v !== null && f.in.values.includes(v);
    }
    return f.and.every((p) => matchesValue(p, value, def));
}

/** Parse a Moray filter string (for tests and diagnostics). */
export function parseLdapFilter(s: string): LdapFilter {
    return ldap.parse(s);
}
