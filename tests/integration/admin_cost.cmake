am_integration_test(admin_cost integration/admin_cost.sh)
