// The Moray bucket initializer's patience: every Moray call it makes is
// retried with exponential backoff until it succeeds, and only stop() ends
// the waiting early (a sleep between attempts wakes at once, and what was
// running or waiting then fails with Stopped). Before the first connection,
// an attempt is retried as soon as the client has one.

import { StoreUnavailableError } from '../errors.js';
import type { MorayClient } from './client.js';

/** The part of a bunyan logger the bucket initializer uses. */
export interface InitLogger {
    info(obj: object, msg?: string): void;
    warn(obj: object, msg?: string): void;
    error(obj: object, msg?: string): void;
}

/** stop() was called: what was waiting for setup will not get it. */
export class Stopped extends StoreUnavailableError {}

export class Retrier {
    /** stop() was called: no attempt starts any more. */
    stopped = false;
    private sleeping: { timer: NodeJS.Timeout; wake: () => void } | null = null;

    constructor(
        private readonly client: MorayClient,
        private readonly log: InitLogger,
        private readonly minDelay: number,
        readonly maxDelay: number,
    ) {}

    /** Stop retrying, and wake a sleep between attempts. */
    stop(): void {
        this.stopped = true;
        if (this.sleeping) {
            clearTimeout(this.sleeping.timer);
            this.sleeping.wake();
        }
    }

    /** Run `fn` once, unless stop() was called. */
    async once<R>(fn: () => Promise<R>): Promise<R> {
        if (this.stopped) {
            throw new Stopped('stopped');
        }
        return fn();
    }

    /** Run `fn` until it succeeds, backing off; only stop() ends it early. */
    async retrying<R>(what: string, fn: () => Promise<R>): Promise<R> {
        let delay = this.minDelay;
        for (let attempt = 1; ; attempt++) {
            if (this.stopped) {
                throw new Stopped(`${what}: stopped`);
            }
            try {
                return await fn();
            } catch (err) {
                if (this.stopped) {
                    throw new Stopped(`${what}: stopped`);
                }
                const transient = err instanceof StoreUnavailableError;
                const fields = { err, attempt, retryInMs: delay };
                if (transient) {
                    this.log.warn(fields, `${what}: moray error, will retry`);
                } else {
                    this.log.error(fields, `${what}: failed, will retry`);
                }
            }
            // Before the first connection, retry as soon as there is one.
            await this.sleep(delay, this.client.connected ? null : this.client.waitConnected(delay).catch(() => undefined));
            delay = Math.min(delay * 2, this.maxDelay);
        }
    }

    /** Sleep `ms`, or until `early` settles, or until stop(). */
    private sleep(ms: number, early: Promise<void> | null = null): Promise<void> {
        return new Promise((resolve) => {
            const wake = (): void => {
                clearTimeout(timer);
                this.sleeping = null;
                resolve();
            };
            const timer = setTimeout(wake, ms);
            this.sleeping = { timer, wake };
            void early?.then(wake);
        });
    }
}

/** A promise with its settlers, for waits that setup resolves or stop() rejects. */
export interface Deferred {
    promise: Promise<void>;
    resolve: () => void;
    reject: (err: Error) => void;
}

export function deferred(): Deferred {
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
    });
    // A stop() before anyone waits must not be an unhandled rejection.
    promise.catch(() => undefined);
    return { promise, resolve, reject };
}
