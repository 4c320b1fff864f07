// Request validation (lib/model/validate.ts): the request schemas compiled
// once, their failures translated into SAPI 2.1.2's codes and messages, and
// the uuid and flag helpers.

import t from 'tap';

import { SapiError } from '../../lib/errors.js';
import type { RequestId } from '../../schemas/requests.js';
import { flagValue, isUuid, validateRequest } from '../../lib/model/validate.js';
import { isSapiError } from '../lib/model-ctx.js';

const UUID = '930896af-bf8c-48d4-885c-6573a94b1853';

function failure(schemaId: string, params: Record<string, unknown>): unknown {
    try {
        validateRequest(schemaId as RequestId, params);
    } catch (err) {
        return err;
    }
    return new Error(`${schemaId} accepted ${JSON.stringify(params)}`);
}

function details(err: unknown): unknown {
    return err instanceof SapiError ? err.errors : undefined;
}

t.test('valid requests pass; keys no schema names are allowed', async (t) => {
    t.doesNotThrow(() => validateRequest('CreateApplication', { name: 'sdc', owner_uuid: UUID }));
    t.doesNotThrow(() => validateRequest('CreateApplication', { name: 'sdc', owner_uuid: UUID.toUpperCase(), whatever: [1] }));
    t.doesNotThrow(() => validateRequest('CreateInstance', { service_uuid: UUID, params: { server_uuid: UUID, other: 1 }, master: 'true', async: false }));
    t.doesNotThrow(() => validateRequest('UpdateService', {}));
    t.doesNotThrow(() => validateRequest('ListInstances', { limit: 10 }));
    t.doesNotThrow(() => validateRequest('ListInstances', { limit: '10', type: 'agent', unindexed: '' }));
    t.doesNotThrow(() => validateRequest('CreateManifest', { name: 'n', path: '/p', template: { any: ['thing'] } }), 'template is any JSON');
});

t.test('an unknown schema id is a programming error, not a 409', async (t) => {
    const err = failure('NoSuchRoute', {});
    t.notOk(err instanceof SapiError);
    t.match(err, { message: 'no request schema NoSuchRoute' });
});

t.test('missing keys: 409 MissingParameter listing them in the schema order', async (t) => {
    isSapiError(t, failure('CreateApplication', {}), 409, 'MissingParameter', 'missing required keys: name, owner_uuid');
    isSapiError(t, failure('CreateApplication', { owner_uuid: UUID }), 409, 'MissingParameter', 'missing required keys: name');
    isSapiError(t, failure('CreateManifest', { template: 1 }), 409, 'MissingParameter', 'missing required keys: name, path');
    isSapiError(t, failure('CreateService', { name: 5 }), 409, 'MissingParameter', 'missing required keys: application_uuid');
});

t.test('a malformed uuid: "<field> must be a UUID", nested fields dotted', async (t) => {
    const top = failure('CreateApplication', { name: 'sdc', owner_uuid: 'nope' });
    isSapiError(t, top, 409, 'InvalidArgument', 'owner_uuid must be a UUID');
    t.strictSame(details(top), [{ field: 'owner_uuid', code: 'Invalid', message: 'owner_uuid must be a UUID' }]);

    const nested = failure('CreateInstance', { service_uuid: UUID, params: { image_uuid: 'x' } });
    isSapiError(t, nested, 409, 'InvalidArgument', 'params.image_uuid must be a UUID');
    t.strictSame(details(nested), [{ field: 'params.image_uuid', code: 'Invalid', message: 'params.image_uuid must be a UUID' }]);
    isSapiError(t, failure('ListInstances', { marker: `${UUID}0` }), 409, 'InvalidArgument', 'marker must be a UUID');
});

t.test('a wrong type: "<field> must be <type>", alternatives joined with "or"', async (t) => {
    isSapiError(t, failure('UpdateService', { params: 'x' }), 409, 'InvalidArgument', 'params must be object');
    isSapiError(t, failure('UpdateService', { params: [] }), 409, 'InvalidArgument', 'params must be object');
    isSapiError(t, failure('CreateApplication', { name: 5, owner_uuid: UUID }), 409, 'InvalidArgument', 'name must be string');
    isSapiError(t, failure('UpdateService', { manifests: { a: 1 } }), 409, 'InvalidArgument', 'manifests.a must be string');
    isSapiError(t, failure('ListInstances', { limit: 1.5 }), 409, 'InvalidArgument', 'limit must be string or integer');
});

t.test('an enum: "<field> must be one of: …" with the allowed values as JSON', async (t) => {
    isSapiError(t, failure('ListInstances', { type: 'zone' }), 409, 'InvalidArgument', 'type must be one of: "vm", "agent"');
    isSapiError(
        t,
        failure('CreateInstance', { service_uuid: UUID, master: 'yes' }),
        409,
        'InvalidArgument',
        'master must be one of: true, false, "true", "false", "1", "0", ""',
    );
});

t.test('a pattern: "<field> is invalid"', async (t) => {
    isSapiError(t, failure('ListInstances', { limit: 'ten' }), 409, 'InvalidArgument', 'limit is invalid');
    isSapiError(t, failure('ListInstances', { limit: '-1' }), 409, 'InvalidArgument', 'limit is invalid');
});

t.test('several invalid fields: all in `errors`, the message is the first', async (t) => {
    const err = failure('CreateInstance', { service_uuid: 'bad', params: 'x', metadata: 1 });
    isSapiError(t, err, 409, 'InvalidArgument', 'service_uuid must be a UUID');
    t.strictSame(details(err), [
        { field: 'service_uuid', code: 'Invalid', message: 'service_uuid must be a UUID' },
        { field: 'params', code: 'Invalid', message: 'params must be object' },
        { field: 'metadata', code: 'Invalid', message: 'metadata must be object' },
    ]);
    t.strictSame(
        (err as SapiError).toJSON(),
        { code: 'InvalidArgument', message: 'service_uuid must be a UUID', errors: details(err) },
        'the body restify sends',
    );
});

t.test('isUuid: the 8-4-4-4-12 hex form, either case, strings only', async (t) => {
    t.ok(isUuid(UUID));
    t.ok(isUuid(UUID.toUpperCase()));
    t.notOk(isUuid(`${UUID} `));
    t.notOk(isUuid(UUID.replace(/-/g, '')));
    t.notOk(isUuid('930896af-bf8c-48d4-885c-6573a94b185g'));
    t.notOk(isUuid(undefined));
    t.notOk(isUuid(42));
});

t.test('flagValue: true, "true" and "1" are set; everything else is not', async (t) => {
    for (const v of [true, 'true', '1']) {
        t.equal(flagValue(v), true, JSON.stringify(v));
    }
    for (const v of [false, 'false', '0', '', undefined, null, 1, 'TRUE', 'yes']) {
        t.equal(flagValue(v), false, String(JSON.stringify(v)));
    }
});
