// The service's configuration file (etc/config.json, rendered in a Triton
// zone from sapi_manifests/sapi/template and sapi-master/template). Keys
// keep SAPI 2.1.2's names. Every object is closed: a key the schema does
// not name is an error, so a misspelt key fails at start-up instead of
// being ignored. lib/config.ts derives the SapiConfig type from this.
//
// config-agent renders every mustache value as a string; lib/config.ts
// validates with type coercion, so "8881" is the integer 8881 there.

const port = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const tcpPort = { type: 'integer', minimum: 1, maximum: 65535 } as const;

/** A Triton service's base URL ("http://vmapi.coal.example.com"). */
const service = {
    type: 'object',
    additionalProperties: false,
    properties: { url: { type: 'string', format: 'http-url' } },
    required: ['url'],
} as const;

/** How cueball retries one kind of operation (cueball's recovery object). */
const recovery = {
    type: 'object',
    additionalProperties: false,
    properties: {
        retries: { type: 'integer', minimum: 0 },
        timeout: { type: 'integer', minimum: 1 },
        maxTimeout: { type: 'integer', minimum: 1 },
        delay: { type: 'integer', minimum: 0 },
        maxDelay: { type: 'integer', minimum: 0 },
        delaySpread: { type: 'number', minimum: 0, maximum: 1 },
    },
    required: ['retries', 'timeout', 'delay'],
} as const;

/** Bunyan's level names, and its level numbers (as the SetLogLevel route takes them). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', '10', '20', '30', '40', '50', '60'] as const;

export const configSchema = {
    $id: 'Config',
    type: 'object',
    additionalProperties: false,
    properties: {
        port: { ...port, default: 8080 },
        host: { type: 'string', default: '0.0.0.0' },
        mode: { type: 'string', enum: ['proto', 'full'] },
        datacenter_name: { type: 'string' },
        instanceUuid: { type: 'string' },
        serverUuid: { type: 'string' },
        server_uuid: { type: 'string' },
        adminIp: { type: 'string' },
        metricsPort: port,
        maxHttpSockets: { type: 'integer', minimum: 1, default: 100 },
        // Names are matched without regard to case (lib/config.ts lowers them first).
        log_level: { type: 'string', enum: LOG_LEVELS, default: 'info' },
        maxBodyBytes: { type: 'integer', minimum: 1024, default: 1048576 },
        requestTimeoutMs: { type: 'integer', minimum: 1000, default: 3_600_000 },
        // How long a lease (a server's agent lock, a rollout's ownership) lasts unless renewed.
        lease_ttl_ms: { type: 'integer', minimum: 100, default: 30_000 },
        store: {
            type: 'object',
            additionalProperties: false,
            default: {},
            properties: {
                backend: { type: 'string', enum: ['sqlite', 'moray'], default: 'sqlite' },
                path: { type: 'string', minLength: 1, default: './data/sapi.sqlite' },
            },
        },
        moray: {
            type: 'object',
            additionalProperties: false,
            properties: {
                host: { type: 'string', minLength: 1 },
                port: { ...tcpPort, default: 2020 },
                srvDomain: { type: 'string', minLength: 1 },
                // Passed to the moray client, which checks the same rules.
                cueballOptions: {
                    type: 'object',
                    additionalProperties: false,
                    properties: {
                        resolvers: { type: 'array', items: { type: 'string' } },
                        service: { type: 'string' },
                        defaultPort: tcpPort,
                        maxDNSConcurrency: { type: 'integer', minimum: 1 },
                        target: { type: 'integer', minimum: 0 },
                        maximum: { type: 'integer', minimum: 1 },
                        recovery: {
                            type: 'object',
                            additionalProperties: false,
                            properties: {
                                default: recovery,
                                dns: recovery,
                                dns_srv: recovery,
                                connect: recovery,
                                initial: recovery,
                            },
                        },
                    },
                    // cueball takes both or neither.
                    dependencies: { target: ['maximum'], maximum: ['target'] },
                },
                // Multi-DC: the master DC's Moray (from sapi-master.config.json).
                master_host: { type: ['string', 'null'] },
                master_port: { type: ['integer', 'null'], minimum: 1, maximum: 65535 },
            },
        },
        vmapi: service,
        cnapi: service,
        imgapi: service,
        napi: service,
        papi: service,
        // Finished rollouts kept (the newest keep_finished, none older than keep_days).
        rollouts: {
            type: 'object',
            additionalProperties: false,
            default: {},
            properties: {
                keep_finished: { type: 'integer', minimum: 1, default: 200 },
                keep_days: { type: 'integer', minimum: 1, default: 90 },
            },
        },
        deploy: {
            type: 'object',
            additionalProperties: false,
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
