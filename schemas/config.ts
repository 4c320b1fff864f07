// The service's configuration file (etc/config.json, rendered in a Triton
// zone from sapi_manifests/sapi/template). Keys keep SAPI 2.1.2's names.

const url = { type: 'object', properties: { url: { type: 'string' } }, required: ['url'] } as const;

export const configSchema = {
    $id: 'Config',
    type: 'object',
    properties: {
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
        host: { type: 'string', default: '0.0.0.0' },
        mode: { type: 'string', enum: ['proto', 'full'] },
        datacenter_name: { type: 'string' },
        instanceUuid: { type: 'string' },
        serverUuid: { type: 'string' },
        server_uuid: { type: 'string' },
        adminIp: { type: 'string' },
        metricsPort: { type: 'integer', minimum: 0, maximum: 65535 },
        maxHttpSockets: { type: 'integer', minimum: 1, default: 100 },
        log_level: { type: 'string', default: 'info' },
        maxBodyBytes: { type: 'integer', minimum: 1024, default: 1048576 },
        requestTimeoutMs: { type: 'integer', minimum: 1000, default: 3_600_000 },
        store: {
            type: 'object',
            default: {},
            properties: {
                backend: { type: 'string', enum: ['sqlite', 'moray'], default: 'sqlite' },
                path: { type: 'string', default: './data/sapi.sqlite' },
            },
        },
        moray: {
            type: 'object',
            properties: {
                host: { type: 'string' },
                port: { type: 'integer', default: 2020 },
                srvDomain: { type: 'string' },
                cueballOptions: { type: 'object' },
                master_host: { type: ['string', 'null'] },
                master_port: { type: ['integer', 'string', 'null'] },
            },
        },
        vmapi: url,
        cnapi: url,
        imgapi: url,
        napi: url,
        papi: url,
        deploy: {
            type: 'object',
            default: {},
            properties: {
                jobPollIntervalMs: { type: 'integer', minimum: 1, default: 5000 },
                jobDeadlineMs: { type: 'integer', minimum: 1, default: 3_600_000 },
                taskPollIntervalMs: { type: 'integer', minimum: 1, default: 1000 },
                taskDeadlineMs: { type: 'integer', minimum: 1, default: 1_800_000 },
                cnAgentTaskDeadlineMs: { type: 'integer', minimum: 1, default: 3_600_000 },
                downstreamTimeoutMs: { type: 'integer', minimum: 1, default: 60_000 },
            },
        },
    },
} as const;
