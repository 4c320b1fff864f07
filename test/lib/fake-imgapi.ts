// Fake local IMGAPI: GET /images/:uuid with an agent image manifest (name,
// version, state, files), 404 otherwise.

import { createHash, randomUUID } from 'node:crypto';

import type { ImgapiImage } from '../../lib/clients/imgapi.js';
import { FakeHttpError, FakeHttpServer, clone, type FakeLog } from './fake-http.js';

/** The admin user every Triton core image belongs to. */
export const ADMIN_UUID = '930896af-bf8c-48d4-885c-6573a94b1853';

export interface NewImage {
    uuid?: string;
    name: string;
    version?: string;
    state?: ImgapiImage['state'];
    type?: string;
    os?: string;
    owner?: string;
    public?: boolean;
}

export interface FakeImgapiState {
    images: Map<string, ImgapiImage>;
}

export interface FakeImgapiOptions {
    log?: FakeLog;
    images?: NewImage[];
}

/** A full manifest, as IMGAPI returns it, from a few fields. */
export function imageManifest(img: NewImage): ImgapiImage {
    const uuid = img.uuid ?? randomUUID();
    return {
        v: 2,
        uuid,
        owner: img.owner ?? ADMIN_UUID,
        name: img.name,
        version: img.version ?? '1.0.0',
        state: img.state ?? 'active',
        disabled: false,
        public: img.public ?? false,
        published_at: new Date().toISOString(),
        type: img.type ?? 'other',
        os: img.os ?? 'other',
        files: [
            {
                sha1: createHash('sha1').update(uuid).digest('hex'),
                size: 4_194_304,
                compression: 'gzip',
            },
        ],
    };
}

export class FakeImgapi extends FakeHttpServer {
    readonly state: FakeImgapiState = { images: new Map() };

    constructor(opts: FakeImgapiOptions = {}) {
        super({ name: 'IMGAPI', log: opts.log });
        for (const img of opts.images ?? []) {
            this.addImage(img);
        }
        this.route('GET', '/images/:uuid', (req) => {
            const uuid = req.params['uuid'] ?? '';
            const img = this.state.images.get(uuid);
            if (!img) {
                throw new FakeHttpError(404, 'ResourceNotFound', `image ${uuid} not found`);
            }
            return { status: 200, body: clone(img) };
        });
    }

    /** Adds (or replaces) an image; returns its manifest. */
    addImage(img: NewImage): ImgapiImage {
        const m = imageManifest(img);
        this.state.images.set(m.uuid, m);
        return m;
    }
}

export async function startFakeImgapi(opts: FakeImgapiOptions = {}): Promise<FakeImgapi> {
    return new FakeImgapi(opts).start();
}
