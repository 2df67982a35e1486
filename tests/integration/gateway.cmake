am_integration_test(gateway integration/gateway.sh)
