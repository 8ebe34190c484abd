"""The backup Job's shell script (a constant).

Invariants:

* **no spec text in the script** - the script never changes with the spec; every setting arrives as an
  environment variable, is re-checked by the script (names and numbers only), and is always quoted, so nothing
  a MultiNicOperator author writes can become shell syntax;
* **a failed dump is a failed Job** - `set -euo pipefail`: if `mariadb-dump` fails, the pipeline into `gzip`
  fails, the Job fails, and the half-written file (a hidden `.partial`) is removed; a backup becomes visible
  under its final name only after `gzip -t` verified it;
* **the password never leaves a private file** - it is read from the mounted Secret into a mode-0600 option
  file passed with `--defaults-extra-file`, never put on a command line (`/proc/*/cmdline`) or in the environment;
* **retention only touches its own files** - pruning (newest `RETENTION_KEEP_LAST`, and/or younger than
  `RETENTION_MAX_AGE_MINUTES` by the timestamp in the name) matches only `<db>-YYYYmmddTHHMMSSZ.sql.gz`, and
  never removes the backup just written; it runs only after a successful dump.

A backup is restored with `gunzip -c FILE | mariadb DATABASE` (the dump names no database, so any may receive it).
"""

from __future__ import annotations

SCRIPT = r"""set -euo pipefail
export LC_ALL=C TZ=UTC
umask 077
say() { printf 'backup: %s\n' "$*" >&2; }
: "${BACKUP_DIR:?}" "${DB_HOST:?}" "${DB_PORT:?}" "${DB_USER:?}" "${DB_NAME:?}" "${DB_PASSWORD_FILE:?}"
case "$DB_NAME" in *[!A-Za-z0-9_]*) say "DB_NAME must be letters, digits and _"; exit 2;; esac
case "$DB_USER" in *[!A-Za-z0-9_]*) say "DB_USER must be letters, digits and _"; exit 2;; esac
case "$DB_HOST" in *[!A-Za-z0-9.-]*) say "DB_HOST must be a host name"; exit 2;; esac
case "$DB_PORT" in ''|*[!0-9]*) say "DB_PORT must be a number"; exit 2;; esac
keep="${RETENTION_KEEP_LAST:-}"
age="${RETENTION_MAX_AGE_MINUTES:-}"
case "$keep$age" in *[!0-9]*) say "retention settings must be whole numbers"; exit 2;; esac
dump="$(command -v mariadb-dump || command -v mysqldump)" || { say "no mariadb-dump in this image"; exit 2; }

work="$(mktemp -d)"
partial=""
cleanup() { rm -rf -- "$work"; if [ -n "$partial" ]; then rm -f -- "$partial"; fi; }
trap cleanup EXIT

password="$(cat -- "$DB_PASSWORD_FILE")"
case "$password" in *$'\n'*|*$'\r'*) say "the password contains a line break"; exit 2;; esac
password="${password//\\/\\\\}"
password="${password//\"/\\\"}"
printf '[client]\npassword="%s"\n' "$password" > "$work/client.cnf"
unset password

mkdir -p -- "$BACKUP_DIR"
name="$DB_NAME-$(date -u +%Y%m%dT%H%M%SZ).sql.gz"
partial="$BACKUP_DIR/.$name.partial"
"$dump" --defaults-extra-file="$work/client.cnf" --host="$DB_HOST" --port="$DB_PORT" --user="$DB_USER" \
    --single-transaction --quick --no-tablespaces "$DB_NAME" | gzip -c > "$partial"
gzip -t -- "$partial"
mv -f -- "$partial" "$BACKUP_DIR/$name"
partial=""
say "wrote $name ($(wc -c < "$BACKUP_DIR/$name") bytes)"

shopt -s nullglob
backups=("$BACKUP_DIR/$DB_NAME"-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z.sql.gz)
count=${#backups[@]}
cutoff=""
if [ -n "$age" ]; then
    cutoff="$DB_NAME-$(date -u -d "@$(( $(date -u +%s) - age * 60 ))" +%Y%m%dT%H%M%SZ).sql.gz"
fi
for (( i = 0; i < count - 1; i++ )); do
    base="${backups[i]##*/}"
    if { [ -n "$keep" ] && (( count - i > keep )); } || { [ -n "$cutoff" ] && [[ "$base" < "$cutoff" ]]; }; then
        rm -f -- "${backups[i]}"
        say "pruned $base"
    fi
done
find "$BACKUP_DIR" -maxdepth 1 -type f -name ".$DB_NAME-*.sql.gz.partial" -mmin +1440 -delete
"""
