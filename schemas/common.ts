// Shared schema fragments for request bodies.

export const UUID_RE = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export const uuid = { type: 'string', format: 'uuid' } as const;
export const str = { type: 'string' } as const;
export const obj = { type: 'object' } as const;
/** Flags arrive as JSON booleans or as query/form strings. */
export const flag = { type: ['boolean', 'string'], enum: [true, false, 'true', 'false', '1', '0', ''] } as const;
export const manifestsMap = { type: 'object', additionalProperties: { type: 'string' } } as const;
