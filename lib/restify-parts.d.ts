// The parts of restify that lib/server.ts loads one by one instead of
// through restify's index (see there), typed with @types/restify's types.

declare module 'restify/lib/server.js' {
    import type { Router, Server as RestifyServer, ServerOptions } from 'restify';

    const Server: new (options: ServerOptions & { router: Router }) => RestifyServer;
    export = Server;
}

declare module 'restify/lib/router.js' {
    import type { Router as RestifyRouter, RouterOptions } from 'restify';

    const Router: new (options: RouterOptions) => RestifyRouter;
    export = Router;
}

declare module 'restify/lib/plugins/query.js' {
    import type { plugins, RequestHandler } from 'restify';

    const queryParser: (options?: plugins.QueryParserOptions) => RequestHandler;
    export = queryParser;
}

declare module 'restify/lib/plugins/bodyParser.js' {
    import type { plugins, RequestHandler } from 'restify';

    const bodyParser: (options?: plugins.BodyParserOptions) => RequestHandler[];
    export = bodyParser;
}
