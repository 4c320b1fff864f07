// The domain objects, as stored and as returned.

export type InstanceType = 'vm' | 'agent';
export type { Mode } from '../stor/store.js';
export type Dict = Record<string, unknown>;

export interface Application {
    [key: string]: unknown;
    uuid: string;
    name: string;
    owner_uuid: string;
    params?: Dict;
    metadata?: Dict;
    metadata_schema?: Dict;
    manifests?: Record<string, string>;
    master?: boolean;
}

export interface Service {
    [key: string]: unknown;
    uuid: string;
    name: string;
    application_uuid: string;
    type: InstanceType;
    params?: Dict;
    metadata?: Dict;
    manifests?: Record<string, string>;
    master?: boolean;
}

/**
 * Stored instances carry two derived top-level index fields mirroring
 * `params.server_uuid` and `params.image_uuid` (never serialized).
 */
export interface Instance {
    [key: string]: unknown;
    uuid: string;
    service_uuid: string;
    type: InstanceType;
    params?: Dict;
    metadata?: Dict;
    manifests?: Record<string, string>;
    master?: boolean;
    exists?: boolean;
    server_uuid?: string;
    image_uuid?: string;
}

export interface Manifest {
    [key: string]: unknown;
    uuid: string;
    name: string;
    path: string;
    template: unknown;
    post_cmd?: string;
    post_cmd_linux?: string;
    version: string;
    master?: boolean;
}

export type Kind = 'application' | 'service' | 'instance' | 'manifest';
