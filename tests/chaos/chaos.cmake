# The chaos suite (tests/chaos/*.sh): faults injected while metrics flow, each
# checking the table against the publishers' and collectors' own counts.
# Registered as integration.chaos_NAME with the label chaos; AM_CHAOS_SOAK=1
# in the environment runs the long versions, hence the longer timeout.

# am_chaos_test(NAME SCRIPT [SERIAL]): SERIAL for tests that stop the shared database.
function(am_chaos_test name script)
  am_integration_test(chaos_${name} chaos/${script} ${ARGV2})
  set_tests_properties(integration.chaos_${name} PROPERTIES LABELS "integration;chaos" TIMEOUT 1800)
  # Under sanitizers memory use is theirs: the tests record it but do not bound it.
  set_property(TEST integration.chaos_${name} APPEND PROPERTY ENVIRONMENT "AM_SANITIZE=${AM_SANITIZE}")
endfunction()

am_chaos_test(db_restart db_restart.sh SERIAL)
am_chaos_test(collector_kill collector_kill.sh)
am_chaos_test(slow_joiner slow_joiner.sh)

add_executable(am-flap-proxy ${CMAKE_CURRENT_SOURCE_DIR}/tools/flap_proxy.c)
target_link_libraries(am-flap-proxy PRIVATE am_common)
am_chaos_test(bus_flaps bus_flaps.sh)
am_chaos_test(collector_crash collector_crash.sh)
am_chaos_test(overload overload.sh)
am_chaos_test(replay_ring_small replay_ring_small.sh)
