am_integration_test(admin_gzip integration/admin_gzip.sh)
