# shellcheck shell=bash
# Helpers of the admin_metrics* tests: source after tests/lib.sh and admin.sh.

# shellcheck disable=SC2034 # used by the tests that source this file
M=/api/llm-backends/metrics

# rows: the number of stored metrics.
rows() { am_psql 'SELECT count(*) FROM llm_performance_metric'; }

# psql_with VAR VALUE SQL: run SQL, which reads VALUE as :'VAR', in the test's database.
psql_with() {
	printf '%s\n' "$3" | "$AM_PSQL" -X -q -At -v ON_ERROR_STOP=1 -v "$1=$2" "$AM_TEST_DB_URL"
}
