// What the config validator's code calls besides itself: the formats the
// config schema names beyond ajv's own, and string length in characters. A
// module of its own, free of ajv: the validator the build writes ahead of
// time (config-validator.generated.js) imports them from here, so reading
// the config at start-up loads none of ajv.

/** A Triton service's base URL: http or https, with a host. */
function isHttpUrl(s: string): boolean {
    try {
        const u = new URL(s);
        return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
    } catch {
        return false;
    }
}

export const configFormats = {
    'http-url': { type: 'string' as const, validate: isHttpUrl },
};

/**
 * A string's length in characters (code points), as minLength counts it:
 * a surrogate pair is one character. The generated code calls it where
 * ajv's own code calls its runtime's ucs2length (the same count).
 */
export function charLength(s: string): number {
    let n = 0;
    for (let i = 0; i < s.length; i++, n++) {
        const c = s.charCodeAt(i);
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
            const next = s.charCodeAt(i + 1);
            if (next >= 0xdc00 && next <= 0xdfff) {
                i++;
            }
        }
    }
    return n;
}
