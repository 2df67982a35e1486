# Checks of deploy/: the container build file, the Kubernetes manifests as
# kubectl kustomize renders them, and the compose file. deploy.npm installs
# their npm packages first, once.
add_test(NAME deploy.npm COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run.sh --install)
set_tests_properties(deploy.npm PROPERTIES
  TIMEOUT 300 LABELS deploy FIXTURES_SETUP am_deploy_npm
  ENVIRONMENT "AM_BIN_DIR=${CMAKE_BINARY_DIR}/bin;AM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
foreach(check dockerfile k8s compose)
  add_test(NAME deploy.${check} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run.sh ${check}.test.js)
  set_tests_properties(deploy.${check} PROPERTIES
    TIMEOUT 300 LABELS deploy FIXTURES_REQUIRED am_deploy_npm
    ENVIRONMENT "AM_BIN_DIR=${CMAKE_BINARY_DIR}/bin;AM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endforeach()
