// Request parameter schemas, one per route that takes input. `$id` is the
// route name; `required` lists keys in 2.1.2's order (the error message
// "missing required keys: a, b" follows it).

import type { FromSchema } from 'json-schema-to-ts';

import { flag, manifestsMap, obj, str, uuid } from './common.js';

export const CreateApplication = {
    $id: 'CreateApplication',
    type: 'object',
    required: ['name', 'owner_uuid'],
    properties: {
        name: str,
        owner_uuid: uuid,
        uuid,
        params: obj,
        metadata: obj,
        metadata_schema: obj,
        manifests: manifestsMap,
        master: flag,
    },
} as const;

export const CreateService = {
    $id: 'CreateService',
    type: 'object',
    required: ['name', 'application_uuid'],
    properties: {
        name: str,
        application_uuid: uuid,
        uuid,
        params: obj,
        metadata: obj,
        manifests: manifestsMap,
        master: flag,
    },
} as const;

export const CreateInstance = {
    $id: 'CreateInstance',
    type: 'object',
    required: ['service_uuid'],
    properties: {
        service_uuid: uuid,
        uuid,
        params: {
            type: 'object',
            properties: { image_uuid: uuid, server_uuid: uuid },
        },
        metadata: obj,
        manifests: manifestsMap,
        master: flag,
        async: flag,
        exists: flag,
    },
} as const;

export const CreateManifest = {
    $id: 'CreateManifest',
    type: 'object',
    required: ['name', 'path', 'template'],
    properties: {
        name: str,
        path: str,
        post_cmd: str,
        post_cmd_linux: str,
        version: str,
        uuid,
        master: flag,
    },
} as const;

const updateCommon = {
    action: str,
    params: obj,
    metadata: obj,
    manifests: manifestsMap,
} as const;

export const UpdateApplication = {
    $id: 'UpdateApplication',
    type: 'object',
    properties: { ...updateCommon, metadata_schema: obj, owner_uuid: uuid },
} as const;

export const UpdateService = {
    $id: 'UpdateService',
    type: 'object',
    properties: updateCommon,
} as const;

export const UpdateInstance = {
    $id: 'UpdateInstance',
    type: 'object',
    properties: {
        ...updateCommon,
        params: { type: 'object', properties: { image_uuid: uuid, server_uuid: uuid } },
    },
} as const;

export const UpgradeInstance = {
    $id: 'UpgradeInstance',
    type: 'object',
    properties: { image_uuid: uuid, async: flag },
} as const;

const paging = {
    limit: { type: ['string', 'integer'], pattern: '^[0-9]+$' },
    marker: uuid,
    include_master: flag,
} as const;

export const ListApplications = {
    $id: 'ListApplications',
    type: 'object',
    properties: { name: str, owner_uuid: { type: 'string' }, ...paging },
} as const;

export const ListServices = {
    $id: 'ListServices',
    type: 'object',
    properties: { name: str, application_uuid: uuid, type: { type: 'string', enum: ['vm', 'agent'] }, ...paging },
} as const;

export const ListInstances = {
    $id: 'ListInstances',
    type: 'object',
    properties: {
        service_uuid: uuid,
        application_uuid: uuid,
        type: { type: 'string', enum: ['vm', 'agent'] },
        server_uuid: uuid,
        image_uuid: uuid,
        unindexed: flag,
        ...paging,
    },
} as const;

export const ListManifests = {
    $id: 'ListManifests',
    type: 'object',
    properties: paging,
} as const;

/** Rollouts: the input as the route normalizes it (lists as arrays, numbers as numbers). */
const uuidList = { type: 'array', items: uuid, 'x-message': 'must be a list of UUIDs' } as const;
const positive = { type: 'number', exclusiveMinimum: 0, 'x-message': 'must be a positive number' } as const;

/**
 * One of three forms (the runner checks that exactly one is given):
 * `service_uuid` + `image_uuid`; `services` (each image defaults to the
 * service's params.image_uuid); `all_agents: true`. The last two take
 * `exclude_services` (names or UUIDs).
 */
export const CreateRollout = {
    $id: 'CreateRollout',
    type: 'object',
    properties: {
        service_uuid: uuid,
        image_uuid: uuid,
        services: {
            type: 'array',
            minItems: 1,
            items: { type: 'object', required: ['service_uuid'], properties: { service_uuid: uuid, image_uuid: uuid }, additionalProperties: false },
            'x-message': 'must be a non-empty list of {"service_uuid": UUID, "image_uuid": UUID (optional)}',
        },
        all_agents: flag,
        exclude_services: { type: 'array', items: { type: 'string', minLength: 1 }, 'x-message': 'must be a list of service names or UUIDs' },
        concurrency: { type: 'integer', minimum: 1, maximum: 1000, 'x-message': 'must be an integer between 1 and 1000' },
        servers: uuidList,
        instances: uuidList,
        stall_factor: positive,
        stall_min_finished: positive,
        instance_timeout_ms: positive,
        canary: { type: 'integer', minimum: 1, 'x-message': 'must be an integer of at least 1' },
        auto_promote_after_ms: { type: 'integer', minimum: 0, 'x-message': 'must be an integer of at least 0' },
        max_failures: {
            anyOf: [
                { type: 'integer', minimum: 1 },
                { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?%$' },
            ],
            'x-message': 'must be a count of at least 1 or a percentage such as "5%" (over 0, at most 100)',
        },
        // Answer the plan without starting anything.
        dry_run: flag,
        // Upgrade agents found newer than their target too (they are skipped otherwise).
        allow_downgrade: flag,
        // Also install the planned agents a targeted server lacks.
        install_missing: flag,
    },
} as const;

/** Every request schema, by route name (the schema's `$id`). */
export const REQUEST_SCHEMAS = {
    CreateApplication,
    CreateService,
    CreateInstance,
    CreateManifest,
    UpdateApplication,
    UpdateService,
    UpdateInstance,
    UpgradeInstance,
    ListApplications,
    ListServices,
    ListInstances,
    ListManifests,
    CreateRollout,
} as const;

export type RequestId = keyof typeof REQUEST_SCHEMAS;

/** The type of each request once it passed its schema: declared once, in the schema. */
export interface Requests {
    CreateApplication: FromSchema<typeof CreateApplication>;
    CreateService: FromSchema<typeof CreateService>;
    CreateInstance: FromSchema<typeof CreateInstance>;
    CreateManifest: FromSchema<typeof CreateManifest>;
    UpdateApplication: FromSchema<typeof UpdateApplication>;
    UpdateService: FromSchema<typeof UpdateService>;
    UpdateInstance: FromSchema<typeof UpdateInstance>;
    UpgradeInstance: FromSchema<typeof UpgradeInstance>;
    ListApplications: FromSchema<typeof ListApplications>;
    ListServices: FromSchema<typeof ListServices>;
    ListInstances: FromSchema<typeof ListInstances>;
    ListManifests: FromSchema<typeof ListManifests>;
    CreateRollout: FromSchema<typeof CreateRollout>;
}

export type RequestOf<K extends RequestId> = Requests[K];

export const ALL_REQUEST_SCHEMAS = Object.values(REQUEST_SCHEMAS);
