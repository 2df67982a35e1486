# Alert rules: validation, firing and resolving once, webhook delivery and retries.
am_integration_test(admin_alerts integration/admin_alerts.sh)
