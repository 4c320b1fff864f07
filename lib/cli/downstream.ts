// CNAPI, VMAPI and IMGAPI clients for the commands that need them (check,
// migrate), from a command-line flag or the environment.

import { CnapiClient } from '../clients/cnapi.js';
import { ImgapiClient } from '../clients/imgapi.js';
import { VmapiClient } from '../clients/vmapi.js';
import { checkUrl, type Cli } from './common.js';
import { UsageError } from './errors.js';

/** CNAPI from `--cnapi-url` or CNAPI_URL (required). */
export function cnapiClient(cli: Cli, flag: string | undefined): CnapiClient {
    const url = flag ?? cli.io.env.CNAPI_URL;
    if (!url) {
        throw new UsageError('this command needs CNAPI: give --cnapi-url URL or set CNAPI_URL');
    }
    const client = new CnapiClient({ url: checkUrl(url, '--cnapi-url / CNAPI_URL'), timeoutMs: 180_000 });
    cli.track(() => client.close());
    return client;
}

/** VMAPI from `--vmapi-url` or VMAPI_URL; undefined when neither is set. */
export function vmapiClient(cli: Cli, flag: string | undefined): VmapiClient | undefined {
    const url = flag ?? cli.io.env.VMAPI_URL;
    if (!url) {
        return undefined;
    }
    const client = new VmapiClient({ url: checkUrl(url, '--vmapi-url / VMAPI_URL'), timeoutMs: 60_000 });
    cli.track(() => client.close());
    return client;
}

/** IMGAPI from `--imgapi-url` or IMGAPI_URL; undefined when neither is set. */
export function imgapiClient(cli: Cli, flag: string | undefined): ImgapiClient | undefined {
    const url = flag ?? cli.io.env.IMGAPI_URL;
    if (!url) {
        return undefined;
    }
    const client = new ImgapiClient({ url: checkUrl(url, '--imgapi-url / IMGAPI_URL'), timeoutMs: 60_000 });
    cli.track(() => client.close());
    return client;
}
