#!/bin/bash
# Entrypoint of the TEST-ONLY MariaDB image (Debian's mariadb-server; users run the official image).
#
# It honours the subset of the official image's contract the operator uses: MARIADB_ROOT_PASSWORD(_FILE),
# MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD(_FILE), read only when the data directory is empty
# (exactly like the official entrypoint), and runs with a read-only root filesystem: it writes only to
# /var/lib/mysql (the volume), /run/mysqld and /tmp.
set -euo pipefail
datadir=/var/lib/mysql
say() { printf '%s [entrypoint] %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

from_env() {  # from_env VAR -> value of VAR or of the file named by VAR_FILE
    local var="$1" file_var="${1}_FILE"
    if [[ -n "${!file_var:-}" ]]; then cat "${!file_var}"; else printf '%s' "${!var:-}"; fi
}
sql_string() { local s="${1//\\/\\\\}"; printf "'%s'" "${s//\'/\\\'}"; }

if [[ "${1:-}" == "" || "${1:-}" == mariadbd || "${1:-}" == mysqld ]]; then
    [[ $# -gt 0 ]] && shift
    common=(--datadir="$datadir" --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid
            --tmpdir=/tmp --skip-log-bin --skip-name-resolve)
    if [[ ! -d "$datadir/mysql" ]]; then
        root_password="$(from_env MARIADB_ROOT_PASSWORD)"
        [[ -n "$root_password" ]] || { say "MARIADB_ROOT_PASSWORD(_FILE) is required to initialise"; exit 1; }
        say "initialising an empty data directory"
        mariadb-install-db --no-defaults --datadir="$datadir" --auth-root-authentication-method=normal \
            --skip-test-db --skip-name-resolve >/tmp/install-db.log 2>&1 || { cat /tmp/install-db.log >&2; exit 1; }
        mariadbd --no-defaults "${common[@]}" --skip-networking &
        pid=$!
        for _ in $(seq 1 120); do
            mariadb-admin --no-defaults --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1 && break
            sleep 0.5
        done
        {
            # Like the official entrypoint: mariadb-install-db also made password-less root@127.0.0.1, root@::1 and
            # root@HOSTNAME; they would shadow root@'%' for TCP connections from inside the pod.
            printf "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';\n"
            printf '%s\n' "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@''', @@hostname, '''');"
            printf "ALTER USER 'root'@'localhost' IDENTIFIED BY %s;\n" "$(sql_string "$root_password")"
            printf "CREATE USER IF NOT EXISTS 'root'@'%%' IDENTIFIED BY %s;\n" "$(sql_string "$root_password")"
            printf "GRANT ALL ON *.* TO 'root'@'%%' WITH GRANT OPTION;\n"
            if [[ -n "${MARIADB_DATABASE:-}" ]]; then
                printf 'CREATE DATABASE IF NOT EXISTS `%s`;\n' "$MARIADB_DATABASE"
            fi
            if [[ -n "${MARIADB_USER:-}" ]]; then
                printf "CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY %s;\n" "$MARIADB_USER" \
                    "$(sql_string "$(from_env MARIADB_PASSWORD)")"
                [[ -n "${MARIADB_DATABASE:-}" ]] &&
                    printf "GRANT ALL ON \`%s\`.* TO '%s'@'%%';\n" "$MARIADB_DATABASE" "$MARIADB_USER"
            fi
            printf 'FLUSH PRIVILEGES;\n'
        } | mariadb --no-defaults --socket=/run/mysqld/mysqld.sock -uroot
        kill "$pid"; wait "$pid" || true
        say "initialised"
    fi
    exec mariadbd --no-defaults "${common[@]}" --bind-address=0.0.0.0 --port=3306 "$@"
fi
exec "$@"
