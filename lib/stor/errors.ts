// The only errors a Store backend throws; the model maps them to API errors.

export class StoreError extends Error {
    override name = 'StoreError';
}

export class NotFoundError extends StoreError {
    override name = 'NotFoundError';
    constructor(
        readonly bucket: string,
        readonly key: string,
    ) {
        super(`no object ${key} in bucket ${bucket}`);
    }
}

export class EtagConflictError extends StoreError {
    override name = 'EtagConflictError';
    constructor(
        readonly bucket: string,
        readonly key: string,
        readonly expected: string | null,
        readonly actual: string | null,
    ) {
        super(`etag conflict on ${bucket}/${key}: expected ${expected ?? 'no object'}, found ${actual ?? 'no object'}`);
    }
}

export class UniqueError extends StoreError {
    override name = 'UniqueError';
    constructor(
        readonly bucket: string,
        readonly key: string,
    ) {
        super(`${bucket}/${key} already exists`);
    }
}

export class StoreUnavailableError extends StoreError {
    override name = 'StoreUnavailableError';
    constructor(
        message: string,
        override readonly cause?: unknown,
    ) {
        super(message);
    }
}
