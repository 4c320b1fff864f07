// What the request validators' code calls besides itself: the uuid format
// and a string's length in characters. Free of ajv: the validators the
// build writes ahead of time (request-validators.generated.js) import these
// and nothing else, so serving requests loads none of ajv.

import { UUID_RE } from '../../schemas/common.js';

export { charLength } from '../config-formats.js';

const uuidRe = new RegExp(UUID_RE);

export function isUuid(s: unknown): s is string {
    return typeof s === 'string' && uuidRe.test(s);
}

/** Formats the request schemas name, beyond (and instead of) ajv-formats' own. */
export const requestFormats = {
    uuid: { type: 'string' as const, validate: (s: string): boolean => uuidRe.test(s) },
};
