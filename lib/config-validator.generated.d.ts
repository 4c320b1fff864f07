// Written by the build (tools/bundle-server.ts) next to the compiled
// config-validator.js; absent when running from source.
import type { ValidateFunction } from 'ajv';

export declare const validate: ValidateFunction;
