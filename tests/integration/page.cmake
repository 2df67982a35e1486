# The performance page, in headless Chromium.
am_integration_test(page integration/page.sh)
