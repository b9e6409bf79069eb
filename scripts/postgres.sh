#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: `scripts/postgres.sh start DIR PORT` creates one in
# DIR (as the `postgres` system user when run as root: the server refuses to run as root), listening
# only on 127.0.0.1:PORT, and prints its superuser URL; `scripts/postgres.sh stop DIR` stops it.
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cmd=$1 dir=$2
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
  port=$3
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  [ -d "$dir/data" ] || as_owner "$bin/initdb" -D "$dir/data" -U keyplane --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
  # fsync off: a test cluster is thrown away; the durability of a real deployment is the operator's
  # PostgreSQL configuration (docs/DEPLOYMENT.md).
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-k $dir -h 127.0.0.1 -p $port -c fsync=off -c max_connections=300" start >/dev/null
  echo "postgres://keyplane@127.0.0.1:$port/postgres"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
esac
