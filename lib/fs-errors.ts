// File system errors in words an operator reads in a one-line start-up
// failure: "permission denied (EACCES)", else the error's own message.

const REASONS: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EISDIR: 'is a directory',
    ENOTDIR: 'a parent is not a directory',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on device',
};

export function errnoText(err: unknown): string {
    const e = err as NodeJS.ErrnoException | undefined;
    const reason = e?.code ? REASONS[e.code] : undefined;
    return reason ? `${reason} (${e?.code})` : (e?.message ?? String(err));
}
