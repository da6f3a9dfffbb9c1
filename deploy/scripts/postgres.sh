#!/usr/bin/env bash
# Makes the PostgreSQL of the Debian package usable by the store tests.
#
#   deploy/scripts/postgres.sh          start the cluster when it is down and
#                                       create the xl_test role and database
#   deploy/scripts/postgres.sh --check  only report what is missing (exit 1 if any)
#
# The tests connect to postgres://xl_test:xl_test@127.0.0.1:5432/xl_test
# (XL_TEST_PG_DSN overrides it). Debian's pg_hba.conf asks for a password
# (scram-sha-256) on 127.0.0.1, so a role with a known password works on a
# fresh machine without editing pg_hba.conf. The role may log in and owns its
# database, nothing more: each test makes and drops its own schema there.
# Idempotent; called by deps.sh.
set -euo pipefail

ROLE=xl_test
PASSWORD=xl_test
DB=xl_test
PORT=5432

log() { printf 'postgres: %s\n' "$*"; }
die() { printf 'postgres: error: %s\n' "$*" >&2; exit 1; }

CHECK_ONLY=0
case "${1:-}" in
	"") ;;
	--check) CHECK_ONLY=1 ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

command -v pg_lsclusters >/dev/null 2>&1 || die "postgresql is not installed (deps.sh installs it)"

as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run '$*'; run this script as root"
	fi
}

# psql as the postgres superuser over the local socket (peer authentication).
as_postgres_psql() {
	as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" "$@"
}

# The cluster on $PORT: "version name status", or nothing.
cluster() {
	pg_lsclusters --no-header 2>/dev/null | awk -v port="$PORT" '$3 == port { print $1, $2, $4; exit }'
}

read -r VERSION NAME STATUS <<<"$(cluster)" || true
if [[ -z ${VERSION:-} ]]; then
	((CHECK_ONLY)) && { log "no PostgreSQL cluster on port $PORT"; exit 1; }
	VERSION=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR == 1 { print $1 }')
	[[ -n $VERSION ]] || VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n1)
	[[ -n $VERSION ]] || die "no PostgreSQL server version under /usr/lib/postgresql"
	log "creating cluster $VERSION/main on port $PORT"
	as_root pg_createcluster "$VERSION" main --port "$PORT"
	NAME=main STATUS=down
fi

if [[ $STATUS != online ]]; then
	((CHECK_ONLY)) && { log "cluster $VERSION/$NAME is $STATUS"; exit 1; }
	log "starting cluster $VERSION/$NAME"
	# pg_ctlcluster goes through systemd where it runs, and starts the server
	# directly in a container without it.
	as_root pg_ctlcluster "$VERSION" "$NAME" start
fi
for _ in $(seq 1 60); do
	pg_isready -q -h 127.0.0.1 -p "$PORT" && break
	sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || die "PostgreSQL does not answer on 127.0.0.1:$PORT"

has_role=$(as_postgres_psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")
has_db=$(as_postgres_psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")
if ((CHECK_ONLY)); then
	[[ $has_role == 1 && $has_db == 1 ]] || { log "role or database $ROLE missing"; exit 1; }
	log "cluster $VERSION/$NAME online; role and database $ROLE present"
	exit 0
fi
if [[ $has_role != 1 ]]; then
	log "creating role $ROLE"
	as_postgres_psql -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [[ $has_db != 1 ]]; then
	log "creating database $DB"
	as_postgres_psql -c "CREATE DATABASE $DB OWNER $ROLE"
fi
PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d "$DB" -tAc 'SELECT 1' >/dev/null ||
	die "cannot log in as $ROLE on 127.0.0.1:$PORT; check pg_hba.conf allows password (scram-sha-256 or md5) logins from 127.0.0.1"
log "ready: postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
