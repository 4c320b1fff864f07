// Work that must not overlap, run one after another per key (an object, a
// (service, server) pair) within this process; different keys run freely.

export class KeyedQueue {
    /** Per key, the end of the last task queued (settled, never rejected). */
    private readonly tails = new Map<string, Promise<unknown>>();

    /** Run `fn` once every task queued before it on `key` has settled; a failed task does not stop the next. */
    run<T>(key: string, fn: () => Promise<T>): Promise<T> {
        const result = (this.tails.get(key) ?? Promise.resolve()).then(fn, fn);
        const tail = result.catch(() => undefined);
        this.tails.set(key, tail);
        void tail.then(() => {
            // Forget a key once its last task is done.
            if (this.tails.get(key) === tail) {
                this.tails.delete(key);
            }
        });
        return result;
    }
}
