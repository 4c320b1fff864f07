// Just enough of sdc-clients 13 (CommonJS, untyped) for the API tests:
// the SAPI client is callback-based, cb(err, obj, req, res).

declare module 'sdc-clients' {
    import type Logger from 'bunyan';

    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    export type Callback = (err: (Error & { statusCode?: number; restCode?: string; body?: any }) | null, obj?: any, req?: any, res?: any) => void;

    export interface SapiOptions {
        url: string;
        version: string;
        log: Logger;
        agent?: unknown;
        headers?: Record<string, string>;
    }

    export class SAPI {
        constructor(opts: SapiOptions);
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        [method: string]: any;
        close(): void;
    }

    const sdc: { SAPI: typeof SAPI };
    export default sdc;
}
