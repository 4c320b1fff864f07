// IMGAPI client: the local DC IMGAPI image lookup the agent deployer needs
// before install-agent (the image must be there, active, and named like the
// agent service, since cn-agent takes the agent's name from the image).

import { ServiceClient, type ServiceClientOptions, isDownstreamStatus, seg } from './http.js';

export interface ImgapiImageFile {
    sha1: string;
    size: number;
    compression: 'gzip' | 'bzip2' | 'xz' | 'none' | (string & {});
}

export interface ImgapiImage {
    uuid: string;
    name: string;
    version: string;
    type: string;
    os: string;
    state: 'active' | 'unactivated' | 'disabled' | 'creating' | 'failed' | (string & {});
    owner: string;
    public: boolean;
    files: ImgapiImageFile[];
    published_at?: string;
    [key: string]: unknown;
}

export type ImgapiClientOptions = ServiceClientOptions;

export class ImgapiClient extends ServiceClient {
    constructor(opts: ImgapiClientOptions) {
        // sdc-clients' IMGAPI client sends `Accept-Version: *`.
        super('IMGAPI', opts, { 'accept-version': '*' });
    }

    /** GET /images/:uuid; null on 404. */
    async getImage(uuid: string, opts: { reqId?: string | undefined } = {}): Promise<ImgapiImage | null> {
        try {
            return (await this.http.get<ImgapiImage>(`/images/${seg(uuid)}`, opts)).body;
        } catch (err) {
            if (isDownstreamStatus(err, 404)) {
                return null;
            }
            throw err;
        }
    }
}
