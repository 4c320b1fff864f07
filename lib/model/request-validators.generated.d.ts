// Written by the build (tools/bundle-server.ts) next to the compiled
// validate.js: one validator per request schema, by its $id; absent when
// running from source.
import type { ValidateFunction } from 'ajv';

export declare const validators: Record<string, ValidateFunction>;
